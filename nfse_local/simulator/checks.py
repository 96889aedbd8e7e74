"""The checks every request document passes before an operation acts on it: root element,
XSD, signatures, and the signer's certificate naming the prestador."""

from __future__ import annotations

from cryptography import x509
from lxml import etree

from nfse_local.simulator.certificates import certificate_names_prestador
from nfse_local.simulator.documents import nfse_tag
from nfse_local.simulator.messages import SCHEMA_INVALID, SIGNATURE_INVALID, Message
from nfse_local.simulator.parsing import schema_errors
from nfse_local.simulator.signatures import SignatureProblem, verify_signatures


def check_document(
    document: etree._Element, expected_root: str, *, signed: bool, verify: bool
) -> tuple[list[Message], list[x509.Certificate]]:
    """(problems, the certificate behind each signature) of a request document.

    Signatures are verified when the document is `signed` and the simulator `verify`s them.
    """
    if document.tag != nfse_tag(expected_root):
        return [(SCHEMA_INVALID[0], f"Esperado {expected_root}.", None)], []
    errors = schema_errors(document)
    if errors:
        return [(SCHEMA_INVALID[0], SCHEMA_INVALID[1], errors[0][:200])], []
    if not (signed and verify):
        return [], []
    try:
        return [], verify_signatures(document)
    except SignatureProblem as exc:
        return [(SIGNATURE_INVALID[0], SIGNATURE_INVALID[1], str(exc)[:200])], []


def certificates_match(certificates: list[x509.Certificate], cnpj: str, *, enforce: bool) -> bool:
    """Whether every signer's certificate names the prestador `cnpj` (always, unless `enforce`)."""
    if not enforce:
        return True
    return all(certificate_names_prestador(cert, cnpj) for cert in certificates)
