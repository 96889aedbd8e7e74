"""NFS-e Nacional (Sistema Nacional NFS-e, SEFIN Nacional): the DPS document, its identifiers,
and the REST transport with mutual TLS. The plug-in module is nfse_core.providers.nacional_1_01.
"""
