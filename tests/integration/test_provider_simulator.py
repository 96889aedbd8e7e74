"""The provider simulator on loopback: the ABRASF client against it, and raw HTTP against it.

The first tests drive it through nfse_core's AbrasfSoapClient. The ones after "Raw HTTP" build
the SOAP requests by hand and read the answers with lxml, so that what they show about the
simulator (signature checks, realistic faults, the shape of its answers against the fixtures
in tests/fixtures/provider) does not depend on the client under test.
"""

from __future__ import annotations

import base64
import json
import math
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree

from nfse_core.providers.abrasf import AbrasfSoapClient, build_cancelar_nfse_envio
from nfse_core.providers.dialect import AbrasfDialect
from nfse_core.providers.port import (
    Cancelled,
    FailureKind,
    Issued,
    LoteIssued,
    Rejected,
    RpsNotFound,
    TemporaryFailure,
)
from nfse_core.providers.registry import ProviderRegistry
from nfse_core.xml.schema import schema_errors
from nfse_core.xml.signing import XmlSigner
from nfse_local.certs import generate_key_and_certificate
from nfse_local.simulator import FaultConfig, Forced, ProviderSimulator
from tests.conftest_provider import (
    CNPJ,
    FIXTURES,
    INSCRICAO,
    OTHER_CNPJ,
    company_keys,
    lote_document,
    other_company_keys,
    rps_document,
    rps_key,
)

pytestmark = pytest.mark.integration

READ_TIMEOUT = 1.0


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator(faults=FaultConfig(timeout_seconds=5.0)) as simulator:
        yield simulator


@pytest.fixture
def client(sim: ProviderSimulator) -> Iterator[AbrasfSoapClient]:
    with AbrasfSoapClient(sim.url, timeout=(1.0, READ_TIMEOUT)) as soap:
        yield soap


@pytest.fixture
def signer() -> XmlSigner:
    key, cert = company_keys()
    return XmlSigner(key, cert)


def _signed(signer: XmlSigner, numero: int, discriminacao: str = "Consultoria em TI") -> bytes:
    return signer.sign_bytes(rps_document(numero, discriminacao=discriminacao))


def _admin(sim: ProviderSimulator, path: str, payload: dict[str, Any] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        sim.base_url + path, data=data, method="POST" if data else "GET"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_issue_then_consult_finds_the_same_nfse(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    issued = client.gerar_nfse(_signed(signer, 1))
    assert isinstance(issued, Issued)
    assert schema_errors(etree.fromstring(issued.raw_xml)) == []

    found = client.consultar_nfse_por_rps(rps_key(1))
    assert isinstance(found, Issued)
    assert (found.nfse_number, found.verification_code) == (
        issued.nfse_number,
        issued.verification_code,
    )
    missing = client.consultar_nfse_por_rps(rps_key(2))
    assert isinstance(missing, RpsNotFound)


def test_same_rps_twice_is_a_classified_duplicate(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    document = _signed(signer, 5)
    assert isinstance(client.gerar_nfse(document), Issued)
    again = client.gerar_nfse(document)
    assert isinstance(again, Rejected)
    assert again.duplicate_rps and again.codes == ("E10",)
    stats = sim.stats()
    assert stats["issued"] == 1 and stats["duplicates_refused"] == 1
    assert stats["issuances_per_rps"] == {f"{CNPJ}/5/1/1": 1}


def test_unsigned_document_is_rejected(client: AbrasfSoapClient) -> None:
    unsigned = etree.tostring(rps_document(7), encoding="UTF-8", xml_declaration=True)
    result = client.gerar_nfse(unsigned)
    assert isinstance(result, Rejected) and not result.duplicate_rps
    assert result.codes == ("E901",)


def test_tampered_document_is_rejected(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    tampered = _signed(signer, 8).replace(b"<ValorServicos>1500.00<", b"<ValorServicos>1.00<")
    result = client.gerar_nfse(tampered)
    assert isinstance(result, Rejected) and result.codes == ("E901",)
    assert sim.stats()["issued"] == 0


def test_schema_invalid_document_is_rejected(client: AbrasfSoapClient, signer: XmlSigner) -> None:
    broken = _signed(signer, 9).replace(b"<ItemListaServico>01.07<", b"<ItemListaServico>99.99<")
    result = client.gerar_nfse(broken)
    assert isinstance(result, Rejected) and result.codes == ("E900",)


def test_certificate_of_another_company_is_rejected(client: AbrasfSoapClient) -> None:
    key, cert = other_company_keys()
    result = client.gerar_nfse(XmlSigner(key, cert).sign_bytes(rps_document(10)))
    assert isinstance(result, Rejected) and result.codes == ("E902",)


def test_sha256_signatures_are_accepted(client: AbrasfSoapClient) -> None:
    key, cert = company_keys()
    signer = XmlSigner(key, cert, signature_algorithm="rsa-sha256", digest_algorithm="sha256")
    assert isinstance(client.gerar_nfse(signer.sign_bytes(rps_document(11))), Issued)


def test_business_rejection_by_marker(client: AbrasfSoapClient, signer: XmlSigner) -> None:
    result = client.gerar_nfse(_signed(signer, 12, "Servico [sim:reject]"))
    assert isinstance(result, Rejected) and not result.duplicate_rps


def test_temporary_503_is_a_temporary_failure(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    result = client.gerar_nfse(_signed(signer, 13, "Servico [sim:temporary]"))
    assert isinstance(result, TemporaryFailure)
    assert result.kind is FailureKind.HTTP_STATUS and result.http_status == 503
    assert sim.stats()["issued"] == 0


def test_soap_fault_is_a_temporary_failure(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    sim.force(14, Forced.SOAP_FAULT)
    result = client.gerar_nfse(_signed(signer, 14))
    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.SOAP_FAULT
    sim.force(14, None)
    assert isinstance(client.gerar_nfse(_signed(signer, 14)), Issued)


def test_timeout_is_a_temporary_failure_within_the_client_timeout(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    sim.force(15, Forced.TIMEOUT)
    started = time.monotonic()
    result = client.gerar_nfse(_signed(signer, 15))
    elapsed = time.monotonic() - started
    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.TIMEOUT
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 1.0
    assert sim.stats()["faults_injected"]["timeout"] == 1


def test_lost_answer_then_consult_finds_exactly_one_nfse(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    document = _signed(signer, 16, "Servico [sim:lost]")
    lost = client.gerar_nfse(document)
    assert isinstance(lost, TemporaryFailure) and lost.kind is FailureKind.CONNECTION

    # What the issuance service does next: consult before sending again.
    found = client.consultar_nfse_por_rps(rps_key(16))
    assert isinstance(found, Issued)
    # A blind resend would be refused as a duplicate, never issued twice.
    again = client.gerar_nfse(document)
    assert isinstance(again, Rejected) and again.duplicate_rps
    stats = sim.stats()
    assert stats["issuances_per_rps"] == {f"{CNPJ}/16/1/1": 1}
    assert stats["faults_injected"]["lost"] == 1


def test_cancel_an_issued_nfse(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    issued = client.gerar_nfse(_signed(signer, 17))
    assert isinstance(issued, Issued)

    def pedido(numero: str) -> bytes:
        return signer.sign_bytes(
            build_cancelar_nfse_envio(
                numero_nfse=numero,
                cnpj=CNPJ,
                inscricao_municipal=INSCRICAO,
                codigo_municipio="3550308",
                codigo_cancelamento=1,
                pedido_id=f"canc{numero}",
            )
        )

    cancelled = client.cancelar_nfse(pedido(issued.nfse_number))
    assert isinstance(cancelled, Cancelled) and cancelled.nfse_number == issued.nfse_number
    twice = client.cancelar_nfse(pedido(issued.nfse_number))
    assert isinstance(twice, Rejected) and twice.codes == ("E906",)
    unknown = client.cancelar_nfse(pedido("999999"))
    assert isinstance(unknown, Rejected) and unknown.codes == ("E905",)
    # the consult now shows the cancellation, and the NFS-e is still XSD-valid
    found = client.consultar_nfse_por_rps(rps_key(17))
    assert isinstance(found, Issued)
    assert b"NfseCancelamento" in found.raw_xml
    assert schema_errors(etree.fromstring(found.raw_xml)) == []


def test_synchronous_lot(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    lote = signer.sign_bytes(lote_document([20, 21]))
    result = client.recepcionar_lote_rps_sincrono(lote)
    assert isinstance(result, LoteIssued)
    assert len(result.nfses) == 2 and result.protocol
    again = client.recepcionar_lote_rps_sincrono(lote)
    assert isinstance(again, Rejected) and again.duplicate_rps
    assert sim.stats()["issued"] == 2


def test_soap_12_and_registry_override(sim: ProviderSimulator, signer: XmlSigner) -> None:
    # An endpoint override is refused in "producao" (it would send real documents here).
    registry = ProviderRegistry.default(environment="homologacao", endpoint_override=sim.url)
    resolved = registry.resolve("3550308")
    with AbrasfSoapClient.for_provider(resolved) as default_client:
        assert isinstance(default_client.gerar_nfse(_signed(signer, 30)), Issued)
    with AbrasfSoapClient(
        sim.url, dialect=AbrasfDialect(soap_version="1.2"), timeout=(1.0, 2.0)
    ) as soap12:
        assert isinstance(soap12.gerar_nfse(_signed(signer, 31)), Issued)
        assert isinstance(soap12.consultar_nfse_por_rps(rps_key(31)), Issued)


def test_admin_endpoint_sets_faults_and_reports_stats(
    sim: ProviderSimulator, client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    faults = _admin(sim, "/_admin/faults", {"error_rate": 1.0, "error_status": 500})
    assert faults["error_rate"] == 1.0
    failed = client.gerar_nfse(_signed(signer, 40))
    assert isinstance(failed, TemporaryFailure) and failed.http_status == 500

    _admin(sim, "/_admin/faults", {"error_rate": 0.0, "forced": {"41": "reject"}})
    assert isinstance(client.gerar_nfse(_signed(signer, 41)), Rejected)
    assert isinstance(client.gerar_nfse(_signed(signer, 40)), Issued)

    stats = _admin(sim, "/_admin/stats")
    assert stats["faults_injected"] == {"http_500": 1}
    assert stats["issued"] == 1 and stats["rejected"] == 1
    assert stats["requests_by_operation"] == {"GerarNfse": 3}

    _admin(sim, "/_admin/reset", {})
    assert _admin(sim, "/_admin/stats")["issued"] == 0


def test_latency_is_applied(sim: ProviderSimulator, client: AbrasfSoapClient) -> None:
    sim.set_faults(latency=(0.2, 0.3))
    started = time.monotonic()
    client.consultar_nfse_por_rps(rps_key(50))
    assert time.monotonic() - started >= 0.2


def test_concurrent_sends_of_one_rps_issue_once(sim: ProviderSimulator, signer: XmlSigner) -> None:
    document = _signed(signer, 60)

    def send(_: int) -> object:
        with AbrasfSoapClient(sim.url, timeout=(1.0, 5.0)) as soap:
            return soap.gerar_nfse(document)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(8)))
    assert sum(isinstance(r, Issued) for r in results) == 1
    assert sum(isinstance(r, Rejected) and r.duplicate_rps for r in results) == 7
    assert sim.stats()["issuances_per_rps"] == {f"{CNPJ}/60/1/1": 1}


def test_random_faults_are_reproducible_with_a_seed(signer: XmlSigner) -> None:
    outcomes: list[list[str]] = []
    for _ in range(2):
        faults = FaultConfig(error_rate=0.5, seed=7)
        with ProviderSimulator(faults=faults) as simulator, AbrasfSoapClient(simulator.url) as soap:
            outcomes.append(
                [type(soap.consultar_nfse_por_rps(rps_key(n))).__name__ for n in range(10)]
            )
    assert outcomes[0] == outcomes[1]
    assert {"TemporaryFailure", "RpsNotFound"} <= set(outcomes[0])


# --------------------------------------------------------------------------- Raw HTTP

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL = "http://nfse.abrasf.org.br"
NFSE = "http://www.abrasf.org.br/nfse.xsd"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
ALPHANUMERIC_CNPJ = "12ABC34501DE35"
# The answers are the simulator's, the fixtures are ours: still read without DTDs or entities.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _envelope(operation: str, document: bytes) -> bytes:
    """An ABRASF 2.04 SOAP 1.1 request, built here rather than by the client under test."""
    text = document.decode("utf-8")
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2 :]
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"soap": SOAP11})
    body = etree.SubElement(envelope, f"{{{SOAP11}}}Body")
    request = etree.SubElement(body, f"{{{WSDL}}}{operation}Request", nsmap={"ws": WSDL})
    etree.SubElement(
        request, "nfseCabecMsg"
    ).text = f'<cabecalho xmlns="{NFSE}" versao="2.04"><versaoDados>2.04</versaoDados></cabecalho>'
    etree.SubElement(request, "nfseDadosMsg").text = text
    return etree.tostring(envelope, encoding="UTF-8", xml_declaration=True)


def _post(
    sim: ProviderSimulator,
    operation: str,
    document: bytes,
    *,
    timeout: tuple[float, float] = (2.0, 10.0),
) -> requests.Response:
    return requests.post(
        sim.url,
        data=_envelope(operation, document),
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{WSDL}/{operation}"',
        },
        timeout=timeout,
    )


def _raw_request(sim: ProviderSimulator, operation: str, document: bytes) -> bytes:
    body = _envelope(operation, document)
    head = (
        f"POST {sim.path} HTTP/1.1\r\nHost: {sim.host}:{sim.port}\r\n"
        f'Content-Type: text/xml; charset=utf-8\r\nSOAPAction: "{WSDL}/{operation}"\r\n'
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _inner(envelope_bytes: bytes) -> etree._Element:
    """The ABRASF document carried as text in the answer's outputXML."""
    envelope = etree.fromstring(envelope_bytes, _PARSER)
    output = envelope.find(".//outputXML")
    assert output is not None and output.text, "the answer has no outputXML"
    return etree.fromstring(output.text.encode("utf-8"), _PARSER)


def _codes(document: etree._Element) -> list[str]:
    return [(node.text or "").strip() for node in document.iter(f"{{{NFSE}}}Codigo")]


def _nfse_number(document: etree._Element) -> str | None:
    return document.findtext(f".//{{{NFSE}}}InfNfse/{{{NFSE}}}Numero")


def _consulta(numero: int, cnpj: str = CNPJ) -> bytes:
    """A ConsultarNfseRpsEnvio written out by hand (unsigned in ABRASF 2.04)."""
    return (
        f'<ConsultarNfseRpsEnvio xmlns="{NFSE}"><IdentificacaoRps><Numero>{numero}</Numero>'
        "<Serie>1</Serie><Tipo>1</Tipo></IdentificacaoRps><Prestador><CpfCnpj>"
        f"<Cnpj>{cnpj}</Cnpj></CpfCnpj><InscricaoMunicipal>{INSCRICAO}</InscricaoMunicipal>"
        "</Prestador></ConsultarNfseRpsEnvio>"
    ).encode()


def _consult(sim: ProviderSimulator, numero: int) -> etree._Element:
    answer = _post(sim, "ConsultarNfsePorRps", _consulta(numero))
    assert answer.status_code == 200
    return _inner(answer.content)


def _der_octet_string(value: bytes) -> bytes:
    assert len(value) < 0x80
    return bytes([0x04, len(value)]) + value


def _other_name_keys(cnpj: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An e-CNPJ style certificate naming `cnpj` only in the subjectAltName otherName
    2.16.76.1.3.3 (ICP-Brasil); its CN names no CNPJ, so only the otherName can match."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BR"),
            x509.NameAttribute(NameOID.COMMON_NAME, "EMPRESA SEM CNPJ NO NOME"),
        ]
    )
    other_name = x509.OtherName(
        x509.ObjectIdentifier("2.16.76.1.3.3"), _der_octet_string(cnpj.encode("ascii"))
    )
    start = datetime.now(UTC) - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([other_name]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def test_simulator_imports_nothing_of_the_client() -> None:
    code = (
        "import sys, nfse_local.simulator\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nfse_core'))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert done.stdout.strip() == "[]"


def test_raw_document_signed_by_the_project_signer_is_issued(
    sim: ProviderSimulator, signer: XmlSigner
) -> None:
    answer = _post(sim, "GerarNfse", _signed(signer, 101))
    assert answer.status_code == 200
    document = _inner(answer.content)
    assert _codes(document) == []
    assert _nfse_number(document) == "1"
    assert sim.stats()["issuances_per_rps"] == {f"{CNPJ}/101/1/1": 1}


def test_raw_document_changed_after_signing_is_refused_with_e901(
    sim: ProviderSimulator, signer: XmlSigner
) -> None:
    signed = _signed(signer, 102)
    tampered = signed.replace(b"<ValorServicos>1500.00<", b"<ValorServicos>1.00<")
    assert tampered != signed
    assert _codes(_inner(_post(sim, "GerarNfse", tampered).content)) == ["E901"]
    assert sim.stats()["issued"] == 0


def test_raw_document_signed_by_another_company_is_refused_with_e902(
    sim: ProviderSimulator,
) -> None:
    key, cert = other_company_keys()
    document = XmlSigner(key, cert).sign_bytes(rps_document(103))
    assert _codes(_inner(_post(sim, "GerarNfse", document).content)) == ["E902"]
    assert sim.stats()["issued"] == 0


def test_raw_signature_shown_with_another_certificate_is_refused_with_e901(
    sim: ProviderSimulator, signer: XmlSigner
) -> None:
    # Signed with our key, but KeyInfo shows the other company's certificate: the signature
    # must not verify with it (and so cannot be passed off as that company's).
    _, stranger = other_company_keys()
    document = etree.fromstring(_signed(signer, 119), _PARSER)
    node = document.find(f".//{{{DSIG}}}X509Certificate")
    assert node is not None
    node.text = base64.b64encode(stranger.public_bytes(Encoding.DER)).decode("ascii")
    answer = _post(sim, "GerarNfse", etree.tostring(document, encoding="UTF-8"))
    assert _codes(_inner(answer.content)) == ["E901"]
    assert sim.stats()["issued"] == 0


def test_raw_rsa_sha256_document_verifies(sim: ProviderSimulator) -> None:
    key, cert = company_keys()
    signer = XmlSigner(key, cert, signature_algorithm="rsa-sha256", digest_algorithm="sha256")
    document = _inner(_post(sim, "GerarNfse", signer.sign_bytes(rps_document(104))).content)
    assert _codes(document) == [] and _nfse_number(document) is not None


def test_raw_certificate_naming_the_cnpj_in_its_other_name_is_accepted(
    sim: ProviderSimulator,
) -> None:
    signer = XmlSigner(*_other_name_keys(CNPJ))
    accepted = _inner(_post(sim, "GerarNfse", signer.sign_bytes(rps_document(105))).content)
    assert _codes(accepted) == [] and _nfse_number(accepted) is not None

    stranger = XmlSigner(*_other_name_keys(OTHER_CNPJ))
    refused = _inner(_post(sim, "GerarNfse", stranger.sign_bytes(rps_document(106))).content)
    assert _codes(refused) == ["E902"]


def test_raw_alphanumeric_cnpj_matches_its_certificate(sim: ProviderSimulator) -> None:
    by_cn = XmlSigner(*generate_key_and_certificate(ALPHANUMERIC_CNPJ))
    document = by_cn.sign_bytes(rps_document(107, cnpj=ALPHANUMERIC_CNPJ))
    assert _codes(_inner(_post(sim, "GerarNfse", document).content)) == []

    by_other_name = XmlSigner(*_other_name_keys(ALPHANUMERIC_CNPJ))
    document = by_other_name.sign_bytes(rps_document(108, cnpj=ALPHANUMERIC_CNPJ))
    assert _codes(_inner(_post(sim, "GerarNfse", document).content)) == []
    assert sim.stats()["issued"] == 2


def test_raw_document_with_a_doctype_is_not_read(sim: ProviderSimulator) -> None:
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>' + _consulta(109)
    )
    answer = _post(sim, "ConsultarNfsePorRps", hostile)
    assert answer.status_code == 200 and _codes(_inner(answer.content)) == ["E900"]


def test_raw_consult_of_an_unknown_rps_answers_the_manual_e4(sim: ProviderSimulator) -> None:
    document = _consult(sim, 110)
    messages = document.findall(f".//{{{NFSE}}}MensagemRetorno")
    assert [[(child.text or "") for child in message] for message in messages] == [
        [
            "E4",
            "Esse RPS não foi enviado para a nossa base de dados",
            "Envie o RPS para emissão da NFS-e.",
        ]
    ]


def test_consult_lag_hides_a_new_nfse_from_the_consult_only(
    sim: ProviderSimulator, signer: XmlSigner
) -> None:
    lag = 1.5
    sim.set_faults(consult_lag_seconds=lag)
    document = _signed(signer, 111)
    sent_at = time.monotonic()
    issued = _inner(_post(sim, "GerarNfse", document).content)
    number = _nfse_number(issued)
    assert number is not None

    assert _codes(_consult(sim, 111)) == ["E4"]  # issued, but not visible yet
    # The duplicate check reads the primary: a resend is refused at once.
    assert _codes(_inner(_post(sim, "GerarNfse", document).content)) == ["E10"]

    deadline = sent_at + lag + 10.0
    found = _consult(sim, 111)
    while _nfse_number(found) is None and time.monotonic() < deadline:
        time.sleep(0.1)
        found = _consult(sim, 111)
    assert _nfse_number(found) == number
    assert time.monotonic() - sent_at >= lag
    stats = sim.stats()
    assert stats["faults_injected"]["consult_lag"] >= 1
    assert stats["issuances_per_rps"] == {f"{CNPJ}/111/1/1": 1}


def test_issued_then_timeout_leaves_exactly_one_nfse(
    sim: ProviderSimulator, signer: XmlSigner
) -> None:
    sim.set_faults(issued_then_timeout_rate=1.0)
    document = _signed(signer, 112)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        _post(sim, "GerarNfse", document, timeout=(2.0, 1.0))
    assert time.monotonic() - started >= 1.0

    sim.set_faults(issued_then_timeout_rate=0.0)
    found = _consult(sim, 112)
    assert _nfse_number(found) is not None
    assert _codes(_inner(_post(sim, "GerarNfse", document).content)) == ["E10"]
    stats = sim.stats()
    assert stats["issued"] == 1
    assert stats["issuances_per_rps"] == {f"{CNPJ}/112/1/1": 1}
    assert stats["faults_injected"]["issued_then_timeout"] == 1


def _read_http_answer(sock: socket.socket) -> tuple[bytes, list[tuple[float, int]]]:
    """The whole HTTP answer and (time, size) of every read that returned data."""
    data = b""
    reads: list[tuple[float, int]] = []
    expected: int | None = None
    while expected is None or len(data) < expected:
        chunk = sock.recv(65536)  # the socket's timeout applies to each read
        if not chunk:
            break
        reads.append((time.monotonic(), len(chunk)))
        data += chunk
        if expected is None and b"\r\n\r\n" in data:
            head, _, _ = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            expected = len(head) + 4 + length
    return data, reads


def test_drip_sends_the_answer_in_many_small_slow_writes(sim: ProviderSimulator) -> None:
    interval, step, per_read_timeout = 0.05, 40, 0.5
    sim.set_faults(drip_rate=1.0, drip_interval_seconds=interval, drip_bytes=step)
    with socket.create_connection((sim.host, sim.port), timeout=per_read_timeout) as sock:
        sent_at = time.monotonic()
        sock.sendall(_raw_request(sim, "ConsultarNfsePorRps", _consulta(113)))
        data, reads = _read_http_answer(sock)
    writes = math.ceil(len(data) / step)
    assert data.startswith(b"HTTP/1.1 200 ")
    _, _, body = data.partition(b"\r\n\r\n")
    assert _codes(_inner(body)) == ["E4"]
    # Many reads, each small; together they took longer than the per-read timeout, which
    # never fired because no single wait was that long.
    assert len(reads) >= writes // 2
    assert max(size for _, size in reads) < len(data) // 4
    assert reads[-1][0] - sent_at >= (writes - 1) * interval
    assert reads[-1][0] - sent_at > per_read_timeout
    assert sim.stats()["faults_injected"]["drip"] == 1


def _wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_drip_stops_when_the_client_goes_away(sim: ProviderSimulator) -> None:
    # One byte every half second: the whole answer would take several minutes.
    sim.set_faults(drip_rate=1.0, drip_interval_seconds=0.5, drip_bytes=1)
    with socket.create_connection((sim.host, sim.port), timeout=5.0) as sock:
        sock.sendall(_raw_request(sim, "ConsultarNfsePorRps", _consulta(114)))
        assert sock.recv(1) == b"H"
        assert sim.stats()["drips_in_progress"] == 1
    assert _wait_for(lambda: sim.stats()["drips_in_progress"] == 0, 10.0)


def test_drip_stops_when_the_simulator_stops() -> None:
    faults = FaultConfig(drip_rate=1.0, drip_interval_seconds=0.5, drip_bytes=1)
    simulator = ProviderSimulator(faults=faults).start()
    try:
        with socket.create_connection((simulator.host, simulator.port), timeout=10.0) as sock:
            sock.sendall(_raw_request(simulator, "ConsultarNfsePorRps", _consulta(115)))
            assert sock.recv(1) == b"H"
            simulator.stop()
            received = b""
            try:
                while chunk := sock.recv(1024):
                    received += chunk
            except ConnectionResetError:
                pass
        assert b"\r\n\r\n" not in received  # cut off mid-answer, not finished
        assert _wait_for(lambda: simulator.stats()["drips_in_progress"] == 0, 10.0)
    finally:
        simulator.stop()


def test_soap_fault_inside_http_200(sim: ProviderSimulator, signer: XmlSigner) -> None:
    sim.set_faults(soap_fault_200_rate=1.0)
    answer = _post(sim, "GerarNfse", _signed(signer, 116))
    assert answer.status_code == 200
    envelope = etree.fromstring(answer.content, _PARSER)
    fault = envelope.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None and fault.findtext("faultstring")
    assert envelope.find(".//outputXML") is None
    stats = sim.stats()
    assert stats["issued"] == 0
    assert stats["faults_injected"] == {"soap_fault_200": 1}


def test_consult_internal_error_mixes_not_found_and_failure_either_way(
    sim: ProviderSimulator, signer: XmlSigner
) -> None:
    assert _nfse_number(_inner(_post(sim, "GerarNfse", _signed(signer, 117)).content))
    sim.set_faults(consult_internal_error_rate=1.0)
    for numero in (117, 118):  # issued, and never sent
        document = _consult(sim, numero)
        assert _codes(document) == ["E4", "E999"]
        assert _nfse_number(document) is None
    assert sim.issued(CNPJ, 117) is not None
    assert sim.stats()["faults_injected"]["consult_internal_error"] == 2


def test_admin_endpoint_accepts_the_realistic_faults(sim: ProviderSimulator) -> None:
    settings = {
        "consult_lag_seconds": 2.5,
        "issued_then_timeout_rate": 0.1,
        "drip_rate": 0.2,
        "drip_interval_seconds": 0.8,
        "drip_bytes": 3,
        "soap_fault_200_rate": 0.3,
        "consult_internal_error_rate": 0.4,
    }
    echoed = _admin(sim, "/_admin/faults", settings)
    assert {name: echoed[name] for name in settings} == settings
    assert sim.faults.drip_bytes == 3
    with pytest.raises(urllib.error.HTTPError) as refused:
        _admin(sim, "/_admin/faults", {"drip_bytes": 0})
    assert refused.value.code == 400
    with pytest.raises(ValueError, match="consult_internal_error_rate"):
        sim.set_faults(consult_internal_error_rate=1.5)


# --------------------------------------------------------------------------- fixtures


def _shape(element: etree._Element) -> tuple[Any, ...]:
    """Element names, message codes and fault codes of a tree: its structure, not its text."""
    name = etree.QName(element)
    value: Any = None
    text = (element.text or "").strip()
    if name.localname == "Codigo":
        value = text
    elif name.localname == "faultcode":
        prefix, _, local = text.rpartition(":")
        value = (element.nsmap.get(prefix or None), local)
    elif name.localname == "outputXML":
        value = _shape(etree.fromstring(text.encode("utf-8"), _PARSER))
    children = tuple(_shape(child) for child in element if isinstance(child.tag, str))
    return (name.namespace, name.localname, value, children)


@pytest.mark.parametrize(
    ("fixture", "faults"),
    [
        ("consultar_nfse_rps_not_found.xml", {}),
        ("consultar_nfse_rps_not_found_internal_error.xml", {"consult_internal_error_rate": 1.0}),
        ("soap_fault_11_http_200.xml", {"soap_fault_200_rate": 1.0}),
    ],
)
def test_simulator_answers_have_the_structure_of_the_fixtures(
    sim: ProviderSimulator, fixture: str, faults: dict[str, Any]
) -> None:
    if faults:
        sim.set_faults(**faults)
    answer = _post(sim, "ConsultarNfsePorRps", _consulta(120))
    assert answer.status_code == 200
    expected = etree.fromstring((FIXTURES / fixture).read_bytes(), _PARSER)
    assert _shape(etree.fromstring(answer.content, _PARSER)) == _shape(expected)


NS = {"n": "http://www.abrasf.org.br/nfse.xsd"}


def test_the_provider_computes_base_iss_and_net_value_itself(
    client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    """The simulator's own arithmetic (nfse_local.simulator.documents.provider_values) on an RPS
    with deductions, discounts and retentions agrees with what the request model computed."""
    fields: dict[str, Any] = {
        "total": "1000.00",
        "aliquota": "2.50",
        "issRetido": True,
        "valorDeducoes": "100.00",
        "descontoIncondicionado": "50.00",
        "descontoCondicionado": "10.00",
        "retencoes": {"pis": "6.50", "cofins": "30.00", "ir": "15.00"},
    }
    issued = client.gerar_nfse(signer.sign_bytes(rps_document(31, **fields)))
    assert isinstance(issued, Issued)
    valores = etree.fromstring(issued.raw_xml).find(".//n:ValoresNfse", NS)
    assert valores is not None
    assert valores.findtext("n:BaseCalculo", namespaces=NS) == "850.00"
    assert valores.findtext("n:ValorIss", namespaces=NS) == "21.25"
    # 1000 - 6.50 - 30 - 15 - 21.25 (withheld) - 50 - 10
    assert valores.findtext("n:ValorLiquidoNfse", namespaces=NS) == "867.25"


def test_a_stated_iss_the_provider_does_not_reach_is_rejected(
    client: AbrasfSoapClient, signer: XmlSigner
) -> None:
    document = rps_document(32, total="1000.00", aliquota="2.00")
    stated = document.find(".//n:Valores/n:ValorIss", NS)
    assert stated is not None and stated.text == "20.00"
    stated.text = "20.02"  # beyond the cent of tolerance
    rejected = client.gerar_nfse(signer.sign_bytes(document))
    assert isinstance(rejected, Rejected)
    assert rejected.codes == ("E908",)
