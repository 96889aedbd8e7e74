"""XMLDSig signing and verification of ABRASF documents, and the certificate stores."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import xml.etree.ElementTree as StdET
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from moto import mock_aws

from nfse_core.providers.abrasf import build_cancelar_nfse_envio
from nfse_core.providers.certificates import (
    CertificateInvalid,
    CertificateNotFound,
    FileCertificateStore,
    SecretsManagerCertificateStore,
    load_pkcs12,
)
from nfse_core.xml.schema import DSIG_NS, NFSE_NS, schema_errors
from nfse_core.xml.signing import (
    C14N_1_0,
    SignatureInvalid,
    SignerCache,
    SigningError,
    XmlSigner,
    canonicalize,
    verify_signature,
)
from nfse_local.certs import (
    generate_a1_certificate,
    generate_key_and_certificate,
    to_pfx,
    write_a1_certificate,
)
from tests.conftest_provider import (
    CNPJ,
    INSCRICAO,
    OTHER_CNPJ,
    KeyCert,
    company_keys,
    lote_document,
    other_company_keys,
    rps_document,
)

pytestmark = pytest.mark.unit

DS = {"ds": DSIG_NS, "n": NFSE_NS}
ALGORITHMS = [("rsa-sha1", "sha1"), ("rsa-sha256", "sha256")]


@pytest.fixture
def company() -> KeyCert:
    return company_keys()


@pytest.fixture
def other_company() -> KeyCert:
    return other_company_keys()


def _signer(company: KeyCert, sig: str = "rsa-sha1", dig: str = "sha1") -> XmlSigner:
    key, cert = company
    return XmlSigner(key, cert, signature_algorithm=sig, digest_algorithm=dig)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sig", "dig"), ALGORITHMS)
def test_signed_rps_validates_against_the_abrasf_xsd_and_verifies(
    company: KeyCert, sig: str, dig: str
) -> None:
    signed = _signer(company, sig, dig).sign(rps_document(1))

    assert schema_errors(signed) == []
    assert verify_signature(signed) == ["rpsINV000001"]
    assert verify_signature(signed, company[1]) == ["rpsINV000001"]
    # and once more as a receiver sees it, from bytes
    assert verify_signature(etree.fromstring(etree.tostring(signed))) == ["rpsINV000001"]


@pytest.mark.parametrize(("sig", "dig"), ALGORITHMS)
def test_signature_shape_is_what_abrasf_expects(company: KeyCert, sig: str, dig: str) -> None:
    signed = _signer(company, sig, dig).sign(rps_document(1))
    rps = signed.find("n:Rps", DS)
    assert rps is not None
    # InfDeclaracaoPrestacaoServico, then the Signature, inside Rps
    assert [etree.QName(c).localname for c in rps] == ["InfDeclaracaoPrestacaoServico", "Signature"]
    signature = rps[1]
    assert signature.tag == f"{{{DSIG_NS}}}Signature"
    assert signature.prefix is None  # xmlns="...xmldsig#", no ds: prefix
    c14n = signature.findtext("ds:SignedInfo/ds:CanonicalizationMethod", namespaces=DS)
    assert c14n == ""  # empty element; the algorithm is in the attribute
    assert (
        signature.xpath("string(ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm)", namespaces=DS)
        == C14N_1_0
    )
    method = str(
        signature.xpath("string(ds:SignedInfo/ds:SignatureMethod/@Algorithm)", namespaces=DS)
    )
    assert method.endswith(sig)
    reference = signature.find("ds:SignedInfo/ds:Reference", DS)
    assert reference is not None and reference.get("URI") == "#rpsINV000001"
    transforms = [t.get("Algorithm") for t in reference.findall("ds:Transforms/ds:Transform", DS)]
    assert transforms == ["http://www.w3.org/2000/09/xmldsig#enveloped-signature", C14N_1_0]
    digest = str(reference.xpath("string(ds:DigestMethod/@Algorithm)", namespaces=DS))
    assert digest.endswith(dig)
    x509_text = signature.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=DS)
    assert x509_text is not None
    der = company[1].public_bytes(Encoding.DER)
    assert base64.b64decode("".join(x509_text.split())) == der


def test_digest_matches_an_independent_canonicalization(company: KeyCert) -> None:
    """The digest must be what other XMLDSig stacks compute (see signing.canonicalize)."""
    signed = _signer(company).sign(rps_document(7))
    inf = signed.find("n:Rps/n:InfDeclaracaoPrestacaoServico", DS)
    assert inf is not None
    # The element on its own, canonicalized by the standard library's C14N implementation.
    standalone = etree.tostring(inf)
    expected = StdET.canonicalize(standalone.decode()).encode()
    digest = signed.findtext(".//ds:DigestValue", namespaces=DS)
    assert digest == base64.b64encode(hashlib.sha1(expected).digest()).decode()
    assert canonicalize(inf) == expected


def test_canonicalize_has_no_spurious_empty_namespace() -> None:
    root = etree.fromstring(b'<a xmlns="urn:a" xmlns:x="urn:x"><b><c><d><e/></d></c></b></a>')
    assert canonicalize(root[0]) == b'<b xmlns="urn:a" xmlns:x="urn:x"><c><d><e></e></d></c></b>'


def test_tampered_value_fails_verification(company: KeyCert) -> None:
    signed = etree.tostring(_signer(company).sign(rps_document(1)))
    tampered = signed.replace(b"<ValorServicos>1500.00<", b"<ValorServicos>15.00<")
    assert tampered != signed
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_signature(etree.fromstring(tampered))


def test_unsigned_document_fails_verification() -> None:
    with pytest.raises(SignatureInvalid, match="not signed"):
        verify_signature(rps_document(1))


def test_verification_with_another_certificate_fails(
    company: KeyCert, other_company: KeyCert
) -> None:
    signed = _signer(company).sign(rps_document(1))
    with pytest.raises(SignatureInvalid):
        verify_signature(signed, other_company[1])


def test_sha1_is_refused_when_the_verifier_does_not_allow_it(company: KeyCert) -> None:
    signed = _signer(company).sign(rps_document(1))
    with pytest.raises(SignatureInvalid):
        verify_signature(signed, signature_algorithms=["rsa-sha256"], digest_algorithms=["sha256"])


def test_a_signature_moved_next_to_other_content_is_refused(company: KeyCert) -> None:
    """Signature wrapping: a valid signature must sign the element right before it."""
    signer = _signer(company)
    one = signer.sign(rps_document(1))
    two = rps_document(2)
    signature = one.find("n:Rps/ds:Signature", DS)
    rps_two = two.find("n:Rps", DS)
    assert signature is not None and rps_two is not None
    rps_two.append(signature)
    with pytest.raises(SignatureInvalid, match="preceding element"):
        verify_signature(two)


def test_lot_signs_every_rps_then_the_lot(company: KeyCert) -> None:
    signed = _signer(company, "rsa-sha256", "sha256").sign(lote_document([10, 11]))
    assert schema_errors(signed) == []
    assert verify_signature(signed) == ["rpsINV000010", "rpsINV000011", "lote10"]
    assert etree.QName(signed[1]).localname == "Signature"  # after LoteRps


def test_cancellation_request_is_signed_on_inf_pedido(company: KeyCert) -> None:
    pedido = build_cancelar_nfse_envio(
        numero_nfse="123",
        cnpj=CNPJ,
        inscricao_municipal=INSCRICAO,
        codigo_municipio="3550308",
        codigo_cancelamento=1,
        pedido_id="canc123",
    )
    signed = _signer(company).sign(pedido)
    assert schema_errors(signed) == []
    assert verify_signature(signed) == ["canc123"]


def test_sign_refuses_unknown_documents_and_missing_ids(company: KeyCert) -> None:
    signer = _signer(company)
    with pytest.raises(SigningError, match="no signing rule"):
        signer.sign(etree.fromstring(b"<x/>"))
    document = rps_document(1)
    inf = document.find("n:Rps/n:InfDeclaracaoPrestacaoServico", DS)
    assert inf is not None
    del inf.attrib["Id"]
    with pytest.raises(SigningError, match="no Id"):
        signer.sign(document)


def test_sign_leaves_the_input_untouched(company: KeyCert) -> None:
    document = rps_document(1)
    before = etree.tostring(document)
    _signer(company).sign(document)
    assert etree.tostring(document) == before


def test_signing_with_a_loaded_key_is_fast(company: KeyCert) -> None:
    signer = _signer(company)
    document = rps_document(1)
    signer.sign(document)  # warm-up (schema of signxml, first parser)
    rounds = 50
    started = time.perf_counter()
    for _ in range(rounds):
        signer.sign(document)
    per_document_ms = (time.perf_counter() - started) / rounds * 1000
    # ~0.7 ms on a laptop; the bound only catches a regression to per-call key loading (~40 ms).
    assert per_document_ms < 15


def test_signer_cache_reuses_signers_per_company(company: KeyCert, other_company: KeyCert) -> None:
    cache = SignerCache(maxsize=2)
    first = cache.get(CNPJ, *company)
    assert cache.get(CNPJ, *company) is first
    assert cache.hits == 1 and cache.misses == 1
    sha256 = cache.get(CNPJ, *company, signature_algorithm="rsa-sha256", digest_algorithm="sha256")
    assert sha256 is not first
    cache.get(OTHER_CNPJ, *other_company)  # evicts the least recently used entry
    assert len(cache) == 2
    assert cache.get(CNPJ, *company) is not first


def test_signer_cache_replaces_a_renewed_certificate(company: KeyCert) -> None:
    cache = SignerCache()
    old = cache.get(CNPJ, *company)
    renewed = generate_key_and_certificate(CNPJ)
    new = cache.get(CNPJ, *renewed)
    assert new is not old and new.certificate is renewed[1]


# --------------------------------------------------------------------------- certificates


def test_file_store_loads_and_caches_with_a_ttl(tmp_path: Path) -> None:
    write_a1_certificate(tmp_path, CNPJ, "s3cr3t-pw")
    now = [100.0]
    store = FileCertificateStore(tmp_path, ttl_seconds=60, clock=lambda: now[0])
    certificate = store.get(CNPJ)
    assert certificate.subject_cn == f"EMPRESA:{CNPJ}"
    assert store.get(CNPJ) is certificate
    now[0] += 61
    assert store.get(CNPJ) is not certificate
    assert store.loads == 2
    signed = XmlSigner(certificate.key, certificate.cert).sign(rps_document(1))
    assert verify_signature(signed, certificate.cert) == ["rpsINV000001"]


def test_file_store_errors_never_show_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    write_a1_certificate(tmp_path, CNPJ, "right-password")
    (tmp_path / f"{CNPJ}.password").write_text("wrong-password-123\n")
    store = FileCertificateStore(tmp_path)
    with pytest.raises(CertificateInvalid) as info:
        store.get(CNPJ)
    assert "wrong-password-123" not in str(info.value)
    assert info.value.__cause__ is None
    assert "wrong-password-123" not in caplog.text
    with pytest.raises(CertificateNotFound):
        store.get(OTHER_CNPJ)
    with pytest.raises(CertificateNotFound):
        store.get("../../etc/passwd")


def test_pkcs12_without_rsa_key_or_garbage_is_invalid() -> None:
    with pytest.raises(CertificateInvalid):
        load_pkcs12(CNPJ, b"not a pfx", b"pw")


def test_generated_pfx_round_trips(company: KeyCert) -> None:
    pfx = to_pfx(company[0], company[1], "pw")
    loaded = load_pkcs12(CNPJ, pfx, b"pw")
    assert loaded.cert == company[1]
    with pytest.raises(ValueError, match="password"):
        generate_a1_certificate(CNPJ, "")


@mock_aws
def test_secrets_manager_store_reads_json_secret() -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    pfx = generate_a1_certificate(CNPJ, "pw-123")
    client.create_secret(
        Name=f"nfse/certificates/{CNPJ}",
        SecretString=json.dumps({"pfx": base64.b64encode(pfx).decode(), "password": "pw-123"}),
    )
    client.create_secret(Name=f"nfse/certificates/{OTHER_CNPJ}", SecretString='{"pfx": 1}')
    store = SecretsManagerCertificateStore(client_factory=lambda: client)
    certificate = store.get(CNPJ)
    assert certificate.subject_cn.endswith(CNPJ)
    assert store.get(CNPJ) is certificate
    with pytest.raises(CertificateInvalid) as info:
        store.get(OTHER_CNPJ)
    assert "pw-123" not in str(info.value)
    with pytest.raises(CertificateNotFound):
        store.get("99888777000166")
