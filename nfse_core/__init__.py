"""Shared core of the NFS-e platform: domain, ABRASF XML, providers and stores."""
