"""The ABRASF client against the provider simulator on loopback: issuance, duplicates, faults."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree

from nfse_core.providers.abrasf import AbrasfSoapClient, build_cancelar_nfse_envio
from nfse_core.providers.port import (
    Cancelled,
    FailureKind,
    Issued,
    LoteIssued,
    NotFound,
    Rejected,
    TemporaryFailure,
)
from nfse_core.providers.registry import ProviderRegistry
from nfse_core.xml.schema import schema_errors
from nfse_core.xml.signing import XmlSigner
from nfse_local.simulator import FaultConfig, Forced, ProviderSimulator
from tests.conftest_provider import (
    CNPJ,
    INSCRICAO,
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
    assert isinstance(missing, NotFound)


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
    registry = ProviderRegistry.default(environment="producao", endpoint_override=sim.url)
    resolved = registry.resolve("3550308")
    with AbrasfSoapClient.for_provider(resolved) as default_client:
        assert isinstance(default_client.gerar_nfse(_signed(signer, 30)), Issued)
    with AbrasfSoapClient(sim.url, soap_version="1.2", timeout=(1.0, 2.0)) as soap12:
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
    from concurrent.futures import ThreadPoolExecutor

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
    assert {"TemporaryFailure", "NotFound"} <= set(outcomes[0])
