"""The XMLDSig algorithm names a provider's registry entry may ask for (nfse_core.xml.signing).

A module of their own, without signxml and cryptography: the registry validates its entries
against them in EmitFn, which never signs.
"""

from __future__ import annotations

from typing import Literal

SignatureAlgorithmName = Literal["rsa-sha1", "rsa-sha256"]
DigestAlgorithmName = Literal["sha1", "sha256"]
# The Reference URI of a signature: the signed element's `#Id`, or "" (the whole document).
ReferenceUri = Literal["id", "empty"]
# KeyInfo/X509Data: the certificate and its chain, or the certificate alone on one line.
X509Form = Literal["chain", "single"]
