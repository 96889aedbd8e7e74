"""An NFS-e Nacional invoice on the local stack: POST -> EMITTED -> ISSUED through the simulated
SEFIN Nacional (HTTPS with the company's certificate), with its documents checked by code that
is not the client's: the DPS and the NFS-e against nfelib's XSDs, the DPS signature by xmlsec."""

from __future__ import annotations

import base64
import time
from datetime import date
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.providers.nacional.document import DOCUMENT
from nfse_core.providers.nacional.schema import dps_errors, nfse_errors
from nfse_core.xml.signing import XmlSigner
from nfse_local.certs import generate_key_and_certificate
from nfse_local.samples import nacional_body
from nfse_local.stack import LocalStack
from tests.e2e.conftest import ApiClient

pytestmark = pytest.mark.e2e

DSIG = "{http://www.w3.org/2000/09/xmldsig#}"


def wait_final(api: ApiClient, invoice_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = api.get(invoice_id).json()
        if view["status"] in ("ISSUED", "FAILED") or time.monotonic() > deadline:
            return view
        time.sleep(0.3)


def verify_with_xmlsec(document: bytes) -> None:
    """Verify the enveloped signature with python-xmlsec (libxmlsec1), using the certificate the
    signature carries."""
    root = etree.fromstring(document)
    der = base64.b64decode("".join(root.findtext(f".//{DSIG}X509Certificate").split()))
    pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    xmlsec.tree.add_ids(root, ["Id"])
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatCertPem)
    context.verify(xmlsec.tree.find_node(root, xmlsec.constants.NodeSignature))


def test_a_nacional_invoice_is_issued_with_valid_documents(
    api: ApiClient, local_stack: LocalStack
) -> None:
    created = api.emit(nacional_body())
    assert created.status_code == 201, created.text
    view = wait_final(api, created.json()["invoiceId"])
    assert view["status"] == "ISSUED", view
    assert view["accessKey"] is not None and len(view["accessKey"]) == 50
    assert view["accessKey"].isdigit()

    s3 = local_stack.client("s3")
    bucket = local_stack.resources.docs_bucket
    invoice_id = view["invoiceId"]
    signed = s3.get_object(Bucket=bucket, Key=f"signed/{invoice_id}.xml")["Body"].read()
    nfse = s3.get_object(Bucket=bucket, Key=f"nfse/{invoice_id}.xml")["Body"].read()
    assert dps_errors(etree.fromstring(signed)) == []
    verify_with_xmlsec(signed)
    assert nfse_errors(etree.fromstring(nfse)) == []
    assert view["accessKey"].encode() in nfse


def test_a_tampered_dps_does_not_verify() -> None:
    """The check above can fail: one changed byte inside infDPS breaks the signature."""
    request = parse_invoice_request(nacional_body(), date(2026, 11, 30))
    document = DOCUMENT.build_document(
        request, RpsIdentity(numero=9, serie="1"), "X", date(2026, 11, 30)
    )
    key, cert = generate_key_and_certificate("11222333000181")
    signed = XmlSigner(
        key, cert, signature_algorithm="rsa-sha256", digest_algorithm="sha256"
    ).sign_bytes(etree.fromstring(document))
    verify_with_xmlsec(signed)
    with pytest.raises(xmlsec.Error):
        verify_with_xmlsec(signed.replace(b"1500.00", b"1500.01", 1))


def test_a_nacional_request_without_a_national_code_is_refused_before_numbering(
    api: ApiClient,
) -> None:
    answer = api.emit(nacional_body(itemListaServico="07.02", aliquota="2.00"))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "NOT_SUPPORTED_BY_PROVIDER"
    assert error["details"][0]["field"] == "codigoTributacaoNacional"
    assert "070201" in error["details"][0]["message"]
