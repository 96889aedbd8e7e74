"""The XMLDSig algorithm names a provider's registry entry may ask for (nfse_core.xml.signing).

A module of their own, without signxml and cryptography: the registry validates its entries
against them in EmitFn, which never signs.
"""

from __future__ import annotations

from typing import Literal

SignatureAlgorithmName = Literal["rsa-sha1", "rsa-sha256"]
DigestAlgorithmName = Literal["sha1", "sha256"]
