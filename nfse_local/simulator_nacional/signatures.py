"""XMLDSig with xmlsec (libxmlsec1): the DPS's signature is verified, the NFS-e is signed.

The DPS: exactly one enveloped Signature, right after infDPS inside DPS, referencing
"#" + infDPS@Id, canonicalized with C14N 1.0 or exclusive C14N, RSA-SHA1 or RSA-SHA256 with a
SHA-1 or SHA-256 digest (public sources disagree on which one the SEFIN asks for; both are
accepted here), verified with the key of the X509Certificate it carries.

The NFS-e: the SEFIN signs infNFSe (NFSe_v1.01.xsd requires the Signature); the simulator
signs it with its own throwaway key, RSA-SHA256 and C14N 1.0.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from nfse_local.simulator_nacional.xml import DSIG_NS, nfse_tag


class SignatureProblem(Exception):
    """A DPS whose signature is wrong; `missing` when there is none at all."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


def _ds(local: str) -> str:
    return f"{{{DSIG_NS}}}{local}"


_C14N: Final = frozenset(
    {"http://www.w3.org/TR/2001/REC-xml-c14n-20010315", "http://www.w3.org/2001/10/xml-exc-c14n#"}
)
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
# The same allow-lists for libxmlsec1 itself.
_XMLSEC_SIGNATURE_TRANSFORMS: Final = (
    xmlsec.constants.TransformInclC14N,
    xmlsec.constants.TransformExclC14N,
    xmlsec.constants.TransformRsaSha1,
    xmlsec.constants.TransformRsaSha256,
)
_XMLSEC_REFERENCE_TRANSFORMS: Final = (
    xmlsec.constants.TransformEnveloped,
    xmlsec.constants.TransformInclC14N,
    xmlsec.constants.TransformExclC14N,
    xmlsec.constants.TransformSha1,
    xmlsec.constants.TransformSha256,
)


def verify_dps(document: etree._Element) -> x509.Certificate:
    """The certificate whose key signed the DPS `document`; SignatureProblem otherwise.

    Proves integrity and that the signer holds the key of the certificate it shows, not that
    the certificate chains to ICP-Brasil (test certificates are self-signed).
    """
    signatures = list(document.iter(_ds("Signature")))
    if not signatures:
        raise SignatureProblem("the DPS is not signed", missing=True)
    if len(signatures) != 1:
        raise SignatureProblem("the DPS must carry exactly one Signature")
    signature = signatures[0]
    inf = document.find(nfse_tag("infDPS"))
    if inf is None or signature.getparent() is not document or signature.getprevious() is not inf:
        raise SignatureProblem("the Signature must follow infDPS inside DPS")
    ids = [v for e in document.iter(etree.Element) for k, v in e.attrib.items() if k == "Id"]
    if len(ids) != len(set(ids)):
        raise SignatureProblem("Id values used more than once")
    signed_info = signature.find(_ds("SignedInfo"))
    if signed_info is None:
        raise SignatureProblem("signature without SignedInfo")
    references = signed_info.findall(_ds("Reference"))
    if len(references) != 1 or references[0].get("URI") != f"#{inf.get('Id')}":
        raise SignatureProblem("the signature must reference #infDPS@Id, and only it")
    reference = references[0]
    c14n = signed_info.find(_ds("CanonicalizationMethod"))
    method = signed_info.find(_ds("SignatureMethod"))
    digest = reference.find(_ds("DigestMethod"))
    transforms = [t.get("Algorithm") for t in reference.iterfind(f"{_ds('Transforms')}/*")]
    if (
        c14n is None
        or c14n.get("Algorithm") not in _C14N
        or method is None
        or method.get("Algorithm") not in _SIGNATURE_METHODS
        or digest is None
        or digest.get("Algorithm") not in _DIGEST_METHODS
        or any(t != _ENVELOPED and t not in _C14N for t in transforms)
    ):
        raise SignatureProblem("the signature uses an algorithm not accepted here")
    certificates = _key_info_certificates(signature)
    if not certificates:
        raise SignatureProblem("the signature carries no usable X509Certificate")
    xmlsec.tree.add_ids(document, ["Id"])  # "#x" is resolved through the ID table
    for certificate in certificates:  # KeyInfo may carry the chain: the signer's key verifies
        if _xmlsec_verifies(signature, certificate):
            return certificate
    raise SignatureProblem("the signature does not verify")


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
    # The bare public key: libxmlsec1 would otherwise judge the certificate (dates, chain).
    public_pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        context.key = xmlsec.Key.from_memory(public_pem, xmlsec.constants.KeyDataFormatPem)
        context.verify(signature)
    except xmlsec.Error:
        return False
    return True


def sign_enveloped(
    root: etree._Element, target: etree._Element, key_pem: bytes, cert_pem: bytes
) -> None:
    """Sign `target` (which carries an Id) into a Signature appended to `root`, right after it:
    RSA-SHA256, SHA-256 digest, C14N 1.0, no namespace prefix, the certificate in KeyInfo."""
    signature = xmlsec.template.create(
        root, xmlsec.constants.TransformInclC14N, xmlsec.constants.TransformRsaSha256
    )
    target.addnext(signature)
    reference = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha256, uri=f"#{target.get('Id')}"
    )
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformInclC14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.add_x509_data(key_info)
    xmlsec.tree.add_ids(root, ["Id"])
    context = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(cert_pem, xmlsec.constants.KeyDataFormatPem)
    context.key = key
    context.sign(signature)
