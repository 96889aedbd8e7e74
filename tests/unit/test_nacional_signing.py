"""The signed DPS: XMLDSig over infDPS with the company's key, verified independently with
python-xmlsec (libxmlsec1), still valid against the DPS XSD, broken by any change to infDPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from nfse_core.providers.nacional.document import DOCUMENT
from nfse_core.providers.nacional.schema import DSIG_NS, NACIONAL_NS, dps_errors
from nfse_core.xml.signature_names import DigestAlgorithmName, SignatureAlgorithmName
from nfse_core.xml.signing import SIGNED_ELEMENTS, XmlSigner, verify_signature
from nfse_local.certs import generate_key_and_certificate
from tests.unit.fixtures_xml import EMITTED_ON, INVOICE_ID, sample_request, sample_rps

pytestmark = pytest.mark.unit

NS = {"n": NACIONAL_NS, "ds": DSIG_NS}
CNPJ = "11222333000181"
ALGORITHMS: list[tuple[SignatureAlgorithmName, DigestAlgorithmName, str, str]] = [
    (
        "rsa-sha256",
        "sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    ),
    (
        "rsa-sha1",
        "sha1",
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
    ),
]


@pytest.fixture(scope="module")
def keys() -> Iterator[tuple[rsa.RSAPrivateKey, x509.Certificate]]:
    yield generate_key_and_certificate(CNPJ)


def unsigned_dps() -> bytes:
    request = sample_request(codigoTributacaoMunicipio=None)
    return DOCUMENT.build_document(request, sample_rps(), INVOICE_ID, EMITTED_ON)


def sign(
    keys: tuple[rsa.RSAPrivateKey, x509.Certificate],
    signature_algorithm: SignatureAlgorithmName = "rsa-sha256",
    digest_algorithm: DigestAlgorithmName = "sha256",
) -> bytes:
    key, cert = keys
    signer = XmlSigner(
        key, cert, signature_algorithm=signature_algorithm, digest_algorithm=digest_algorithm
    )
    return signer.sign_bytes(etree.fromstring(unsigned_dps()))


def xmlsec_verify(document: bytes, cert: x509.Certificate) -> None:
    """libxmlsec1's verdict, with the certificate given out of band (raises xmlsec.Error)."""
    root = etree.fromstring(document)
    xmlsec.tree.add_ids(root, ["Id"])
    signature = xmlsec.tree.find_node(root, xmlsec.constants.NodeSignature)
    assert signature is not None
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(
        cert.public_bytes(Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem
    )
    context.verify(signature)


def test_the_dps_has_a_signing_rule() -> None:
    # Rules are by the root's local name, their paths in the root's own namespace.
    assert SIGNED_ELEMENTS["DPS"] == ("infDPS",)


@pytest.mark.parametrize(("signature", "digest", "signature_uri", "digest_uri"), ALGORITHMS)
def test_signed_dps_verifies_with_xmlsec_and_stays_xsd_valid(
    keys: tuple[rsa.RSAPrivateKey, x509.Certificate],
    signature: SignatureAlgorithmName,
    digest: DigestAlgorithmName,
    signature_uri: str,
    digest_uri: str,
) -> None:
    signed = sign(keys, signature, digest)
    root = etree.fromstring(signed)
    assert dps_errors(root) == []
    inf, sig = list(root)
    assert inf.tag == f"{{{NACIONAL_NS}}}infDPS"
    assert sig.tag == f"{{{DSIG_NS}}}Signature"
    assert sig.xpath("ds:SignedInfo/ds:Reference/@URI", namespaces=NS) == [f"#{inf.get('Id')}"]
    assert sig.xpath("ds:SignedInfo/ds:SignatureMethod/@Algorithm", namespaces=NS) == [
        signature_uri
    ]
    assert sig.xpath("ds:SignedInfo/ds:Reference/ds:DigestMethod/@Algorithm", namespaces=NS) == [
        digest_uri
    ]
    assert sig.xpath("ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm", namespaces=NS) == [
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    ]
    xmlsec_verify(signed, keys[1])
    assert verify_signature(root, keys[1]) == [inf.get("Id")]


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"<vServ>1500.00</vServ>", b"<vServ>1500.01</vServ>"), (b"<nDPS>42<", b"<nDPS>43<")],
)
def test_a_changed_byte_of_infdps_breaks_the_signature(
    keys: tuple[rsa.RSAPrivateKey, x509.Certificate], old: bytes, new: bytes
) -> None:
    signed = sign(keys)
    assert signed.count(old) == 1
    tampered = signed.replace(old, new)
    with pytest.raises(xmlsec.Error):
        xmlsec_verify(tampered, keys[1])


def test_another_key_does_not_verify(keys: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    _, other_cert = generate_key_and_certificate("11444777000161")
    with pytest.raises(xmlsec.Error):
        xmlsec_verify(sign(keys), other_cert)
