"""ABRASF SOAP client without sockets: request shape, recorded answers, transport failures."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from lxml import etree

from nfse_core.providers.abrasf import (
    AbrasfSoapClient,
    build_cancelar_nfse_envio,
    build_consultar_nfse_rps_envio,
    build_envelope,
    parse_consultar_nfse_rps_resposta,
)
from nfse_core.providers.port import (
    Cancelled,
    FailureKind,
    Issued,
    Rejected,
    RpsNotFound,
    TemporaryFailure,
)
from nfse_core.providers.registry import ProviderConfig
from nfse_core.xml.schema import NFSE_NS, schema_errors
from tests.conftest_provider import CNPJ, FIXTURES, INSCRICAO, rps_document, rps_key

pytestmark = pytest.mark.unit

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


class FakeSession(requests.Session):
    """Answers every POST from `respond` and remembers what was sent."""

    def __init__(self, respond: Callable[[], requests.Response]) -> None:
        super().__init__()
        self.respond = respond
        self.sent: list[dict[str, Any]] = []

    def post(
        self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any
    ) -> requests.Response:
        self.sent.append({"url": url, "data": data, **kwargs})
        return self.respond()


def _response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.raw = io.BytesIO(body)
    response.headers.update(headers or {"Content-Type": "text/xml"})
    return response


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _client(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[AbrasfSoapClient, FakeSession]:
    session = FakeSession(lambda: _response(body, status, headers))
    # The SOAP settings are the dialect's (registry files before dialects used these names).
    legacy = {k: kwargs.pop(k) for k in ("soap_version", "soap_action_style") if k in kwargs}
    if legacy:
        config = ProviderConfig.model_validate(
            {"name": "t", "endpoints": {"producao": "https://nfse.example.invalid/ws"}, **legacy}
        )
        kwargs["dialect"] = config.dialect
    return AbrasfSoapClient("https://nfse.example.invalid/ws", session=session, **kwargs), session


def _raise(exc: Exception) -> Callable[[], requests.Response]:
    def respond() -> requests.Response:
        raise exc

    return respond


# --------------------------------------------------------------------------- answers


def test_issued_answer_maps_to_issued() -> None:
    client, _ = _client(_fixture("gerar_nfse_issued.xml"))
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, Issued)
    assert result.nfse_number == "2026000000123"
    assert result.verification_code == "AB12CD34E"
    # DataEmissao without offset is the municipality's local time (UTC-3)
    assert result.issued_at.utcoffset() == timedelta(hours=-3)
    assert result.issued_at.replace(tzinfo=None) == datetime(2026, 11, 5, 14, 32, 10)
    comp = etree.fromstring(result.raw_xml)
    assert comp.tag == f"{{{NFSE_NS}}}CompNfse"
    assert schema_errors(comp) == []  # a standalone, valid NFS-e document


def test_inline_soap12_answer_is_read_as_well() -> None:
    client, _ = _client(_fixture("gerar_nfse_issued_inline_soap12.xml"), soap_version="1.2")
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, Issued) and result.nfse_number == "2026000000123"


def test_rejection_keeps_every_message() -> None:
    client, _ = _client(_fixture("gerar_nfse_rejected.xml"))
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, Rejected)
    assert result.codes == ("E4", "E145", "E160")
    assert not result.duplicate_rps
    assert result.messages[1].correcao == "Informe a alíquota de 5%."
    assert result.messages[2].mensagem == "Tomador & intermediário iguais."
    assert "E145: Alíquota" in result.summary()


def test_duplicate_rps_is_classified_with_the_providers_codes() -> None:
    client, _ = _client(_fixture("gerar_nfse_duplicate.xml"))
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, Rejected) and result.duplicate_rps
    # a provider that uses another code for duplicates
    client, _ = _client(
        _fixture("gerar_nfse_rejected.xml"), duplicate_rps_codes=frozenset({"E160"})
    )
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, Rejected) and result.duplicate_rps


@pytest.mark.parametrize(
    ("name", "reason"),
    [("soap_fault_11.xml", "Erro interno"), ("soap_fault_12.xml", "Banco de dados indisponível")],
)
def test_soap_fault_is_temporary(name: str, reason: str) -> None:
    client, _ = _client(_fixture(name), status=500)
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure)
    assert result.kind is FailureKind.SOAP_FAULT
    assert reason in result.reason
    assert result.http_status == 500


def test_soap_fault_with_http_200_is_still_temporary() -> None:
    client, _ = _client(_fixture("soap_fault_11.xml"), status=200)
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.SOAP_FAULT


def test_doctype_inside_output_xml_is_refused() -> None:
    client, _ = _client(_fixture("gerar_nfse_doctype_in_output.xml"))
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure)
    assert result.kind is FailureKind.INVALID_ANSWER
    assert "doctype" in result.reason


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"not xml at all",
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>',
    ],
)
def test_unreadable_answers_are_temporary(body: bytes) -> None:
    client, _ = _client(body)
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.INVALID_ANSWER


def test_http_5xx_is_temporary_with_retry_after() -> None:
    client, _ = _client(b"<html>503</html>", status=503, headers={"Retry-After": "7"})
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure)
    assert result.kind is FailureKind.HTTP_STATUS
    assert result.http_status == 503 and result.retry_after == 7.0


def test_non_2xx_with_a_business_answer_is_not_trusted_as_definitive() -> None:
    client, _ = _client(_fixture("gerar_nfse_rejected.xml"), status=502)
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure) and result.http_status == 502


def test_consult_found_and_not_found() -> None:
    client, session = _client(_fixture("consultar_nfse_rps_found.xml"))
    found = client.consultar_nfse_por_rps(rps_key(42))
    assert isinstance(found, Issued) and found.nfse_number == "2026000000123"
    sent = etree.fromstring(session.sent[0]["data"])
    dados = sent.findtext(".//nfseDadosMsg") or ""
    assert schema_errors(etree.fromstring(dados.encode())) == []
    client, _ = _client(_fixture("consultar_nfse_rps_not_found.xml"))
    missing = client.consultar_nfse_por_rps(rps_key(42))
    assert isinstance(missing, RpsNotFound)
    assert missing.messages[0].codigo == "E4"


def test_not_found_beside_an_internal_error_proves_nothing() -> None:
    """Defect: any message list in a consult answer was read as "not found", so the last try
    recorded FAILED when the provider's consult had failed internally (the NFS-e may exist)."""
    client, _ = _client(_fixture("consultar_nfse_rps_not_found_internal_error.xml"))
    result = client.consultar_nfse_por_rps(rps_key(42))
    assert isinstance(result, TemporaryFailure)
    assert result.kind is FailureKind.INCONCLUSIVE and "E4" in result.reason


@pytest.mark.parametrize(
    ("codes", "proof"),
    [
        (["E4"], True),
        (["E4", "E4"], True),
        (["E92"], False),  # ABRASF: RPS received, not processed yet
        (["E4", "E999"], False),
        (["E160"], False),
        ([], False),
    ],
)
def test_only_the_providers_own_not_found_codes_alone_are_proof(
    codes: list[str], proof: bool
) -> None:
    messages = "".join(
        f"<MensagemRetorno><Codigo>{code}</Codigo><Mensagem>m</Mensagem></MensagemRetorno>"
        for code in codes
    )
    payload = etree.fromstring(
        f'<ConsultarNfseRpsResposta xmlns="{NFSE_NS}"><ListaMensagemRetorno>{messages}'
        "</ListaMensagemRetorno></ConsultarNfseRpsResposta>"
    )
    result = parse_consultar_nfse_rps_resposta(payload, frozenset({"E4"}))
    assert isinstance(result, RpsNotFound) is proof
    if not proof:
        assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.INCONCLUSIVE


def test_the_not_found_codes_are_the_providers() -> None:
    client, _ = _client(_fixture("consultar_nfse_rps_not_found.xml"), rps_not_found_codes={"E5"})
    result = client.consultar_nfse_por_rps(rps_key(42))
    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.INCONCLUSIVE


def test_cancel_confirmation() -> None:
    client, _ = _client(_fixture("cancelar_nfse_ok.xml"))
    result = client.cancelar_nfse(b"<signed/>")
    assert isinstance(result, Cancelled)
    assert result.nfse_number == "2026000000123"
    assert result.cancelled_at == datetime(2026, 11, 6, 9, 0, tzinfo=timezone(timedelta(hours=-3)))


# --------------------------------------------------------------------------- transport


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (requests.ReadTimeout("read timed out"), FailureKind.TIMEOUT),
        (requests.ConnectTimeout("connect timed out"), FailureKind.TIMEOUT),
        (requests.ConnectionError("refused"), FailureKind.CONNECTION),
    ],
)
def test_transport_errors_are_temporary(exc: Exception, kind: FailureKind) -> None:
    session = FakeSession(_raise(exc))
    client = AbrasfSoapClient("https://nfse.example.invalid/ws", session=session)
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure) and result.kind is kind


def test_every_call_has_a_timeout_and_no_redirects() -> None:
    client, session = _client(_fixture("gerar_nfse_issued.xml"), timeout=(2.0, 9.0))
    client.gerar_nfse(b"<signed/>")
    client.consultar_nfse_por_rps(rps_key(1))
    client.cancelar_nfse(b"<signed/>")
    assert [call["timeout"] for call in session.sent] == [(2.0, 9.0)] * 3
    assert all(call["allow_redirects"] is False for call in session.sent)


def test_oversized_answer_is_refused() -> None:
    client, _ = _client(b"<a>" + b"x" * 200_000 + b"</a>", max_answer_bytes=100_000)
    result = client.gerar_nfse(b"<signed/>")
    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.INVALID_ANSWER


# --------------------------------------------------------------------------- requests


def test_envelope_carries_cabecalho_and_document_as_text() -> None:
    document = etree.tostring(rps_document(1), encoding="UTF-8", xml_declaration=True)
    envelope = etree.fromstring(build_envelope("gerar_nfse", document))
    assert envelope.tag == f"{{{SOAP11}}}Envelope"
    request = envelope.find(f"{{{SOAP11}}}Body/{{http://nfse.abrasf.org.br}}GerarNfseRequest")
    assert request is not None
    cabecalho = etree.fromstring((request.findtext("nfseCabecMsg") or "").encode())
    assert cabecalho.get("versao") == "2.04"
    assert cabecalho.findtext(f"{{{NFSE_NS}}}versaoDados") == "2.04"
    assert schema_errors(cabecalho) == []
    dados = request.findtext("nfseDadosMsg") or ""
    assert not dados.startswith("<?xml")
    assert etree.tostring(etree.fromstring(dados.encode())) == etree.tostring(rps_document(1))


@pytest.mark.parametrize(
    ("version", "style", "expected"),
    [
        ("1.1", "operation", {"SOAPAction": '"http://nfse.abrasf.org.br/GerarNfse"'}),
        ("1.1", "empty", {"SOAPAction": '""'}),
        ("1.1", "none", {}),
        ("1.2", "operation", {}),
    ],
)
def test_soap_headers(version: str, style: str, expected: dict[str, str]) -> None:
    client, session = _client(
        _fixture("gerar_nfse_issued.xml"), soap_version=version, soap_action_style=style
    )
    client.gerar_nfse(b"<signed/>")
    headers = session.sent[0]["headers"]
    assert {k: v for k, v in headers.items() if k == "SOAPAction"} == expected
    if version == "1.2":
        assert headers["Content-Type"] == (
            'application/soap+xml; charset=utf-8; action="http://nfse.abrasf.org.br/GerarNfse"'
        )
        sent = etree.fromstring(session.sent[0]["data"])
        assert sent.tag == f"{{{SOAP12}}}Envelope"
    else:
        assert headers["Content-Type"] == "text/xml; charset=utf-8"


def test_consult_and_cancel_documents_are_xsd_valid() -> None:
    assert schema_errors(build_consultar_nfse_rps_envio(rps_key(42))) == []
    pedido = build_cancelar_nfse_envio(
        numero_nfse="2026000000123",
        cnpj=CNPJ,
        inscricao_municipal=INSCRICAO,
        codigo_municipio="3550308",
        codigo_cancelamento=2,
        pedido_id="canc1",
    )
    assert schema_errors(pedido) == []
    with pytest.raises(ValueError):
        build_cancelar_nfse_envio(
            numero_nfse="1",
            cnpj=CNPJ,
            inscricao_municipal=None,
            codigo_municipio="3550308",
            codigo_cancelamento=9,
            pedido_id="c",
        )


def test_client_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        AbrasfSoapClient("ftp://x")
    with pytest.raises(ValueError):
        AbrasfSoapClient("https://x", timeout=(0, 1))
