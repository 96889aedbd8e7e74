"""The ABRASF 2.04 RPS document: built in the XSD's order, valid, rejected when tampered with."""

from __future__ import annotations

import copy
import dataclasses
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from nfse_core.domain.errors import SchemaInvalid
from nfse_core.domain.models import InvoiceRequest
from nfse_core.xml.builder import build_gerar_nfse_envio, format_money, rps_element_id, to_bytes
from nfse_core.xml.schema import NFSE_NS
from nfse_core.xml.validate import SCHEMA_INVALID_MESSAGE, validate_rps_document
from tests.unit.fixtures_xml import (
    EMITTED_ON,
    INVOICE_ID,
    TOMADOR_CNPJ,
    TOMADOR_CPF,
    sample_request,
    sample_rps,
    sample_tomador,
)

pytestmark = pytest.mark.unit

NS = {"n": NFSE_NS}
INF = "n:Rps/n:InfDeclaracaoPrestacaoServico"
# An NCName: what xsd:ID (and so the XMLDSig Reference URI="#...") needs.
NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def build(request: InvoiceRequest | None = None, invoice_id: str = INVOICE_ID) -> etree._Element:
    return build_gerar_nfse_envio(request or sample_request(), sample_rps(), invoice_id, EMITTED_ON)


def text(document: etree._Element, path: str) -> str | None:
    return document.findtext(path, namespaces=NS)


def local_names(element: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in element]


def schema_invalid(document: etree._Element) -> SchemaInvalid:
    with pytest.raises(SchemaInvalid) as caught:
        validate_rps_document(document)
    return caught.value


# --- the document as built ---------------------------------------------------------------


def test_built_document_validates() -> None:
    validate_rps_document(build())


def test_root_is_gerar_nfse_envio_with_abrasf_default_namespace() -> None:
    document = build()

    assert document.tag == f"{{{NFSE_NS}}}GerarNfseEnvio"
    assert document.prefix is None
    assert document.nsmap == {None: NFSE_NS}
    assert all(etree.QName(node).namespace == NFSE_NS for node in document.iter())
    assert to_bytes(document).count(b"xmlns") == 1
    assert b'<GerarNfseEnvio xmlns="http://www.abrasf.org.br/nfse.xsd">' in to_bytes(document)


def test_id_is_on_inf_declaracao_prestacao_servico_only() -> None:
    document = build()

    inf = document.find(INF, NS)
    assert inf is not None
    assert inf.get("Id") == rps_element_id(INVOICE_ID)
    assert [node for node in document.iter() if node.get("Id") is not None] == [inf]


def test_id_is_unique_per_invoice_and_a_valid_xml_id() -> None:
    first = build(invoice_id="01JABCDEFGHJKMNPQRSTVWXYZ0")
    second = build(invoice_id="01JABCDEFGHJKMNPQRSTVWXYZ1")

    ids = [document.find(INF, NS).get("Id") for document in (first, second)]  # type: ignore[union-attr]
    assert ids[0] != ids[1]
    assert all(NCNAME.fullmatch(value or "") for value in ids)
    assert rps_element_id(INVOICE_ID) == f"rps{INVOICE_ID}"


@pytest.mark.parametrize("bad", ["", "has space", "a:b", "<x>", "é", "x" * 253])
def test_rps_element_id_refuses_what_cannot_be_an_xml_id(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot form an XML Id"):
        rps_element_id(bad)


def test_elements_follow_the_xsd_sequence() -> None:
    document = build(sample_request(issRetido=True))

    assert local_names(document) == ["Rps"]
    assert local_names(document[0]) == ["InfDeclaracaoPrestacaoServico"]
    inf = document.find(INF, NS)
    assert inf is not None
    assert local_names(inf) == [
        "Rps",
        "Competencia",
        "Servico",
        "Prestador",
        "TomadorServico",
        "OptanteSimplesNacional",
        "IncentivoFiscal",
    ]
    assert local_names(inf.find("n:Rps", NS)) == ["IdentificacaoRps", "DataEmissao", "Status"]  # type: ignore[arg-type]
    assert local_names(inf.find("n:Servico", NS)) == [  # type: ignore[arg-type]
        "Valores",
        "IssRetido",
        "ResponsavelRetencao",
        "ItemListaServico",
        "CodigoTributacaoMunicipio",
        "Discriminacao",
        "CodigoMunicipio",
        "ExigibilidadeISS",
        "MunicipioIncidencia",
    ]
    assert local_names(inf.find("n:TomadorServico", NS)) == [  # type: ignore[arg-type]
        "IdentificacaoTomador",
        "RazaoSocial",
        "Endereco",
        "Contato",
    ]


def test_values_come_from_the_request_rps_and_emission_date() -> None:
    document = build()

    assert text(document, f"{INF}/n:Rps/n:IdentificacaoRps/n:Numero") == "42"
    assert text(document, f"{INF}/n:Rps/n:IdentificacaoRps/n:Serie") == "1"
    assert text(document, f"{INF}/n:Rps/n:IdentificacaoRps/n:Tipo") == "1"
    assert text(document, f"{INF}/n:Rps/n:DataEmissao") == "2025-03-10"
    assert text(document, f"{INF}/n:Rps/n:Status") == "1"
    assert text(document, f"{INF}/n:Competencia") == "2025-03-01"
    assert text(document, f"{INF}/n:Servico/n:ItemListaServico") == "01.07"
    assert text(document, f"{INF}/n:Servico/n:CodigoTributacaoMunicipio") == "010701"
    assert text(document, f"{INF}/n:Servico/n:CodigoMunicipio") == "3550308"
    assert text(document, f"{INF}/n:Servico/n:ExigibilidadeISS") == "1"
    assert text(document, f"{INF}/n:Servico/n:MunicipioIncidencia") == "3550308"
    assert text(document, f"{INF}/n:Prestador/n:CpfCnpj/n:Cnpj") == "11222333000181"
    assert text(document, f"{INF}/n:Prestador/n:InscricaoMunicipal") == "12345678"
    assert text(document, f"{INF}/n:OptanteSimplesNacional") == "2"
    assert text(document, f"{INF}/n:IncentivoFiscal") == "2"


def test_optional_fields_absent_from_the_request_are_absent_from_the_document() -> None:
    tomador = sample_tomador()
    tomador["endereco"].pop("complemento")
    tomador.pop("email")
    request = sample_request(
        inscricaoMunicipal=None, codigoTributacaoMunicipio=None, tomador=tomador
    )

    document = build(request)

    validate_rps_document(document)
    assert document.find(f"{INF}/n:Prestador/n:InscricaoMunicipal", NS) is None
    assert document.find(f"{INF}/n:Servico/n:CodigoTributacaoMunicipio", NS) is None
    assert document.find(f"{INF}/n:TomadorServico/n:Endereco/n:Complemento", NS) is None
    assert document.find(f"{INF}/n:TomadorServico/n:Contato", NS) is None


def test_to_bytes_is_utf8_with_a_declaration() -> None:
    data = to_bytes(build())

    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert "informática — março".encode() in data
    assert b"\n<GerarNfseEnvio" in data
    assert b"\n" not in data.split(b"?>", 1)[1].strip()


# --- tomador variants ----------------------------------------------------------------------


def test_without_tomador_validates_and_has_no_tomador_servico() -> None:
    document = build(sample_request(tomador=None))

    validate_rps_document(document)
    assert document.find(f"{INF}/n:TomadorServico", NS) is None


@pytest.mark.parametrize(
    ("cpf_cnpj", "element"), [(TOMADOR_CPF, "Cpf"), (TOMADOR_CNPJ, "Cnpj")], ids=["cpf", "cnpj"]
)
def test_tomador_with_cpf_or_cnpj_validates(cpf_cnpj: str, element: str) -> None:
    document = build(sample_request(tomador=sample_tomador(cpf_cnpj)))

    validate_rps_document(document)
    identification = document.find(f"{INF}/n:TomadorServico/n:IdentificacaoTomador/n:CpfCnpj", NS)
    assert identification is not None
    assert local_names(identification) == [element]
    assert identification[0].text == cpf_cnpj


def test_tomador_with_identification_and_name_only_validates() -> None:
    request = sample_request(tomador={"cpfCnpj": TOMADOR_CNPJ, "razaoSocial": "Empresa Ltda"})

    validate_rps_document(build(request))


def test_tomador_without_razao_social_fails_the_xsd_instead_of_getting_a_made_up_name() -> None:
    request = sample_request()
    assert request.tomador is not None
    nameless = request.model_copy(
        update={"tomador": request.tomador.model_copy(update={"razao_social": None})}
    )

    error = schema_invalid(build(nameless))

    assert any("RazaoSocial" in detail.message for detail in error.details)


# --- ISS retido and money ------------------------------------------------------------------


def test_iss_retido_adds_responsavel_retencao_tomador() -> None:
    document = build(sample_request(issRetido=True))

    validate_rps_document(document)
    assert text(document, f"{INF}/n:Servico/n:IssRetido") == "1"
    assert text(document, f"{INF}/n:Servico/n:ResponsavelRetencao") == "1"


def test_iss_not_retido_has_no_responsavel_retencao() -> None:
    document = build(sample_request(issRetido=False))

    assert text(document, f"{INF}/n:Servico/n:IssRetido") == "2"
    assert document.find(f"{INF}/n:Servico/n:ResponsavelRetencao", NS) is None


@pytest.mark.parametrize(
    ("total", "written"),
    [("1500.00", "1500.00"), ("0.10", "0.10"), ("1500", "1500.00"), ("0.1", "0.10")],
)
def test_valor_servicos_has_exactly_two_decimals(total: str, written: str) -> None:
    document = build(sample_request(total=Decimal(total)))

    validate_rps_document(document)
    assert text(document, f"{INF}/n:Servico/n:Valores/n:ValorServicos") == written


def test_aliquota_has_exactly_two_decimals() -> None:
    document = build(sample_request(aliquota=Decimal("2")))

    assert text(document, f"{INF}/n:Servico/n:Valores/n:Aliquota") == "2.00"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("1500.00", "1500.00"),
        ("0.10", "0.10"),
        ("1.5E+3", "1500.00"),
        ("7", "7.00"),
        ("0", "0.00"),
        ("-0", "0.00"),
        ("1500.000", "1500.00"),
        ("123456789012.34", "123456789012.34"),
    ],
)
def test_format_money(value: str, written: str) -> None:
    assert format_money(Decimal(value)) == written


@pytest.mark.parametrize(("value", "written"), [("10.005", "10.005"), ("NaN", "NaN")])
def test_format_money_never_rounds_a_fiscal_amount(value: str, written: str) -> None:
    assert format_money(Decimal(value)) == written


def test_an_amount_with_more_than_two_decimals_fails_the_xsd_at_its_element() -> None:
    request = sample_request().model_copy(update={"total": Decimal("10.005")})

    error = schema_invalid(build(request))

    assert {detail.field for detail in error.details} == {
        "GerarNfseEnvio/Rps/InfDeclaracaoPrestacaoServico/Servico/Valores/ValorServicos"
    }


@settings(max_examples=200, deadline=None)
@given(
    cents=st.integers(min_value=1, max_value=10**15 - 1),
    numero=st.integers(min_value=1, max_value=999_999_999_999_999),
    aliquota_cents=st.integers(min_value=0, max_value=9999),
)
def test_any_two_decimal_amount_and_rps_number_validates(
    cents: int, numero: int, aliquota_cents: int
) -> None:
    total = Decimal(cents).scaleb(-2)
    request = sample_request().model_copy(
        update={"total": total, "aliquota": Decimal(aliquota_cents).scaleb(-2)}
    )
    rps = dataclasses.replace(sample_rps(), numero=numero)

    document = build_gerar_nfse_envio(request, rps, INVOICE_ID, EMITTED_ON)

    validate_rps_document(document)
    written = text(document, f"{INF}/n:Servico/n:Valores/n:ValorServicos")
    assert written is not None
    assert Decimal(written) == total
    assert len(written.split(".")[1]) == 2


# --- tampered documents ---------------------------------------------------------------------


def tampered() -> tuple[etree._Element, etree._Element]:
    document = copy.deepcopy(build())
    inf = document.find(INF, NS)
    assert inf is not None
    return document, inf


def test_missing_required_element_is_reported() -> None:
    document, inf = tampered()
    competencia = inf.find("n:Competencia", NS)
    assert competencia is not None
    inf.remove(competencia)

    error = schema_invalid(document)

    assert error.code == "XSD_INVALID"
    assert error.status == 422
    assert error.message == SCHEMA_INVALID_MESSAGE
    assert len(error.details) == 1
    assert error.details[0].field == ("GerarNfseEnvio/Rps/InfDeclaracaoPrestacaoServico/Servico")
    assert "Competencia" in error.details[0].message


def test_bad_aliquota_is_reported_with_its_path() -> None:
    document, inf = tampered()
    aliquota = inf.find("n:Servico/n:Valores/n:Aliquota", NS)
    assert aliquota is not None
    aliquota.text = "55.555"

    error = schema_invalid(document)

    assert error.details
    assert {detail.field for detail in error.details} == {
        "GerarNfseEnvio/Rps/InfDeclaracaoPrestacaoServico/Servico/Valores/Aliquota"
    }
    assert all("55.555" in detail.message for detail in error.details)


def test_reordered_elements_are_reported() -> None:
    document, inf = tampered()
    servico = inf.find("n:Servico", NS)
    prestador = inf.find("n:Prestador", NS)
    assert servico is not None
    assert prestador is not None
    servico.addprevious(prestador)

    error = schema_invalid(document)

    assert error.details
    assert any("Prestador" in detail.message for detail in error.details)
    assert all(detail.field.startswith("GerarNfseEnvio/Rps/") for detail in error.details)


def test_every_schema_message_becomes_a_field_error() -> None:
    document, inf = tampered()
    for path, value in [
        ("n:Servico/n:Valores/n:Aliquota", "55.555"),
        ("n:Rps/n:Status", "9"),
        ("n:TomadorServico/n:Endereco/n:Cep", "0131-010"),
    ]:
        node = inf.find(path, NS)
        assert node is not None
        node.text = value

    error = schema_invalid(document)

    fields = [detail.field for detail in error.details]
    assert "GerarNfseEnvio/Rps/InfDeclaracaoPrestacaoServico/Servico/Valores/Aliquota" in fields
    assert "GerarNfseEnvio/Rps/InfDeclaracaoPrestacaoServico/Rps/Status" in fields
    assert "GerarNfseEnvio/Rps/InfDeclaracaoPrestacaoServico/TomadorServico/Endereco/Cep" in fields
    assert all(detail.message for detail in error.details)
    assert error.body()["error"]["details"][0].keys() == {"field", "message"}


def test_wrong_namespace_is_rejected() -> None:
    document = etree.fromstring(
        to_bytes(build()).replace(NFSE_NS.encode(), b"http://example.invalid/nfse")
    )

    error = schema_invalid(document)

    assert error.details
