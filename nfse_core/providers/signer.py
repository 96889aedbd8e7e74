"""Signs an RPS document for a prestador, as its municipality's provider requires."""

from __future__ import annotations

from nfse_core.providers.certificates import CertificateStore
from nfse_core.providers.plugin import signing_profile_of
from nfse_core.providers.registry import Registry
from nfse_core.xml.safe import parse_untrusted
from nfse_core.xml.signing import SignerCache


class RpsSigner:
    """Signs a document (the RPS; the consult of a family that wants it signed) with the
    prestador's A1 certificate, in the algorithms and forms its municipality's provider
    requires."""

    def __init__(self, registry: Registry, certificates: CertificateStore) -> None:
        self._registry = registry
        self._certificates = certificates
        self._signers = SignerCache()

    def __call__(self, cnpj: str, municipio: str, document: bytes) -> bytes:
        profile = signing_profile_of(self._registry.resolve(municipio).config)
        certificate = self._certificates.get(cnpj)
        signer = self._signers.get(
            cnpj,
            certificate.key,
            certificate.cert,
            certificate.chain,
            signature_algorithm=profile.signature_algorithm,
            digest_algorithm=profile.digest_algorithm,
            reference_uri=profile.reference_uri,
            x509_form=profile.x509,
        )
        return signer.sign_bytes(parse_untrusted(document))
