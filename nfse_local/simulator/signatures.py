"""XMLDSig verification with xmlsec (libxmlsec1), with the key of the certificate each
Signature carries.

Only enveloped C14N 1.0 signatures with RSA-SHA1 or RSA-SHA256 (SHA1 or SHA256 digests) are
accepted, and each must reference the Id of the element it follows (InfDeclaracaoPrestacaoServico,
LoteRps, InfPedidoCancelamento).
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Final

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from nfse_local.simulator.documents import NFSE_NS

DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"


class SignatureProblem(Exception):
    """A document without a signature, or with one that does not verify."""


def _ds(local: str) -> str:
    """The Clark name of `local` in the XMLDSig namespace."""
    return f"{{{DSIG_NS}}}{local}"


_C14N_1_0: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
_ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SIGNATURE_METHODS: Final = frozenset(
    {
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    }
)
_DIGEST_METHODS: Final = frozenset(
    {"http://www.w3.org/2000/09/xmldsig#sha1", "http://www.w3.org/2001/04/xmlenc#sha256"}
)
_TRANSFORMS: Final = frozenset({_ENVELOPED, _C14N_1_0})
# The same allow-lists for libxmlsec1 itself, so that nothing else runs even if the checks
# on the Signature's text above missed a case.
_XMLSEC_SIGNATURE_TRANSFORMS: Final = (
    xmlsec.constants.TransformInclC14N,
    xmlsec.constants.TransformRsaSha1,
    xmlsec.constants.TransformRsaSha256,
)
_XMLSEC_REFERENCE_TRANSFORMS: Final = (
    xmlsec.constants.TransformEnveloped,
    xmlsec.constants.TransformInclC14N,
    xmlsec.constants.TransformSha1,
    xmlsec.constants.TransformSha256,
)

# The elements each signed document must have signed (the Signature follows each of them).
# The RPS signatures inside a lot are optional in the XSD; when present they are verified too.
_MUST_BE_SIGNED: Final[dict[str, tuple[str, ...]]] = {
    "GerarNfseEnvio": ("Rps/InfDeclaracaoPrestacaoServico",),
    "EnviarLoteRpsSincronoEnvio": ("LoteRps",),
    "CancelarNfseEnvio": ("Pedido/InfPedidoCancelamento",),
    "ConsultarNfseRpsEnvio": ("Pedido",),  # ISSNet 2.04's signed consult
}


def verify_signatures(
    document: etree._Element, *, namespace: str = NFSE_NS, empty_uri: bool = False
) -> list[x509.Certificate]:
    """Verify every Signature in `document`; the certificate that verified each, in order.

    Proves integrity and that the signer holds the key of the certificate it shows, not that
    the certificate chains to ICP-Brasil (the simulator's test certificates are self-signed).
    Each Signature must reference the Id of the element right before it (or, with
    `empty_uri`, the whole document by URI="", as ISSNet 2.04's signatures do) and every Id in
    the document must be unique, so that a valid signature cannot be pointed at other content
    (signature wrapping). `namespace` is the one the document's elements are in.
    """
    signatures = list(document.iter(_ds("Signature")))
    if not signatures:
        raise SignatureProblem("the document is not signed")
    ids: Counter[str] = Counter()
    for element in document.iter(etree.Element):
        for name, value in element.attrib.items():
            if etree.QName(name).localname == "Id":
                ids[str(value)] += 1
    repeated = sorted(value for value, count in ids.items() if count > 1)
    if repeated:
        raise SignatureProblem(f"Id values used more than once: {repeated}")
    local = etree.QName(document).localname
    for path in _MUST_BE_SIGNED.get(local, ()):
        steps = "/".join(f"{{{namespace}}}{step}" for step in path.split("/"))
        for target in document.iterfind(steps):
            follower = target.getnext()
            if follower is None or follower.tag != _ds("Signature"):
                raise SignatureProblem(f"{etree.QName(target).localname} is not signed")
    # xmlsec resolves URI="#x" through the document's ID table; "Id" is no ID by itself.
    xmlsec.tree.add_ids(document, ["Id"])
    return [_verify_one(signature, empty_uri=empty_uri) for signature in signatures]


def _verify_one(signature: etree._Element, *, empty_uri: bool = False) -> x509.Certificate:
    signed_info = signature.find(_ds("SignedInfo"))
    if signed_info is None:
        raise SignatureProblem("signature without SignedInfo")
    references = signed_info.findall(_ds("Reference"))
    if len(references) != 1:
        raise SignatureProblem("each signature must hold exactly one Reference")
    reference = references[0]
    uri = reference.get("URI", "")
    signed = signature.getprevious()
    if empty_uri:
        if uri != "" or signed is None:
            raise SignatureProblem(f'signature reference {uri!r} is not URI=""')
    elif not uri.startswith("#") or signed is None or signed.get("Id") != uri[1:]:
        raise SignatureProblem(f"signature reference {uri!r} is not the element it follows")
    c14n = signed_info.find(_ds("CanonicalizationMethod"))
    method = signed_info.find(_ds("SignatureMethod"))
    digest = reference.find(_ds("DigestMethod"))
    transforms = [t.get("Algorithm") for t in reference.iterfind(f"{_ds('Transforms')}/*")]
    if (
        c14n is None
        or c14n.get("Algorithm") != _C14N_1_0
        or method is None
        or method.get("Algorithm") not in _SIGNATURE_METHODS
        or digest is None
        or digest.get("Algorithm") not in _DIGEST_METHODS
        or any(t not in _TRANSFORMS for t in transforms)
    ):
        raise SignatureProblem(f"signature of {uri} uses an algorithm not accepted here")
    certificates = _key_info_certificates(signature)
    if not certificates:
        raise SignatureProblem("signature carries no usable X509Certificate")
    # A KeyInfo may carry the chain too; the signer's certificate is the one whose key verifies.
    for certificate in certificates:
        if _xmlsec_verifies(signature, certificate):
            return certificate
    raise SignatureProblem(f"signature of {uri} does not verify")


def _key_info_certificates(signature: etree._Element) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for node in signature.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}"):
        try:
            der = base64.b64decode("".join((node.text or "").split()), validate=True)
            certificate = x509.load_der_x509_certificate(der)
        except (binascii.Error, ValueError):
            continue
        if isinstance(certificate.public_key(), rsa.RSAPublicKey):
            found.append(certificate)
    return found


def _xmlsec_verifies(signature: etree._Element, certificate: x509.Certificate) -> bool:
    context = xmlsec.SignatureContext()
    for transform in _XMLSEC_SIGNATURE_TRANSFORMS:
        context.enable_signature_transform(transform)
    for transform in _XMLSEC_REFERENCE_TRANSFORMS:
        context.enable_reference_transform(transform)
    # The bare public key: libxmlsec1 would otherwise judge the certificate itself (dates,
    # chain), which is the provider's ICP-Brasil policy, not what a test certificate can meet.
    public_pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        context.key = xmlsec.Key.from_memory(public_pem, xmlsec.constants.KeyDataFormatPem)
        context.verify(signature)
    except xmlsec.Error:
        return False
    return True
