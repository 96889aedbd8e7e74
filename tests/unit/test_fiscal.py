"""The fiscal rules of issue 13, each through the request a client sends (parse_invoice_request)
and the ABRASF 2.04 document it builds, read back with XPath and checked against the XSD."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from nfse_core.domain import fiscal
from nfse_core.domain.errors import ValidationFailed
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.xml.builder import build_gerar_nfse_envio
from nfse_core.xml.validate import validate_rps_document

NS = {"n": "http://www.abrasf.org.br/nfse.xsd"}
TODAY = date(2026, 12, 1)
BASE: dict[str, Any] = {
    "cnpj": "11.222.333/0001-81",
    "municipio": "3550308",
    "competencia": "2026-11-01",
    "total": "1000.00",
    "itemListaServico": "01.07",
    "discriminacao": "Suporte técnico",
    "aliquota": "2.00",
    "issRetido": False,
}
FOREIGN_TOMADOR = {
    "nif": "98-7654321",
    "razaoSocial": "ACME Inc.",
    "enderecoExterior": {"codigoPais": "2496", "enderecoCompleto": "1 Main St, New York, NY"},
}
INTERMEDIARIO = {
    "cpfCnpj": "11.444.777/0001-61",
    "razaoSocial": "Marketplace Ltda",
    "codigoMunicipio": "3304557",
}


def request(**changes: Any) -> Any:
    body = {**BASE, **changes}
    return parse_invoice_request({k: v for k, v in body.items() if v is not None}, TODAY)


def refused(**changes: Any) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        request(**changes)
    return {d.field: d.message for d in caught.value.details}


def document(**changes: Any) -> etree._Element:
    built = build_gerar_nfse_envio(
        request(**changes), RpsIdentity(numero=7, serie="A"), "01ABC", TODAY
    )
    validate_rps_document(built)
    return built


def text(doc: etree._Element, path: str) -> str | None:
    found = doc.find(".//" + "/".join(f"n:{step}" for step in path.split("/")), NS)
    return None if found is None else found.text


# --- exigibilidade, rates -------------------------------------------------------------------


@pytest.mark.parametrize("code", range(1, 8))
def test_every_exigibilidade_can_be_expressed_and_is_written(code: int) -> None:
    extra: dict[str, Any] = {"exigibilidadeIss": code}
    if code in (6, 7):
        extra["numeroProcesso"] = "0001234-56.2026.8.26.0100"
    if code == 4:
        extra |= {"codigoPais": "2496", "tomador": FOREIGN_TOMADOR}
    built = document(**extra)
    assert text(built, "ExigibilidadeISS") == str(code)
    due = code in (1, 6, 7)
    assert (text(built, "Aliquota") is not None) is due
    assert (text(built, "ValorIss") is not None) is due
    assert (text(built, "NumeroProcesso") is not None) is (code in (6, 7))


@pytest.mark.parametrize("code", [6, 7])
def test_a_suspended_exigibility_needs_its_process_number(code: int) -> None:
    assert refused(exigibilidadeIss=code) == {
        "numeroProcesso": "is required when exigibilidadeIss is 6 or 7"
    }


def test_a_process_number_without_suspension_is_refused() -> None:
    assert "numeroProcesso" in refused(numeroProcesso="123")


@pytest.mark.parametrize("code", [2, 3, 5])
def test_aliquota_is_optional_and_ignored_when_no_iss_is_due(code: int) -> None:
    assert request(exigibilidadeIss=code, aliquota=None).valores.valor_iss is None
    sent = request(exigibilidadeIss=code, aliquota="3.00")
    assert sent.aliquota_aplicada is None
    assert sent.valores.valor_iss is None


def test_aliquota_is_required_when_iss_is_due() -> None:
    assert refused(aliquota=None) == {
        "aliquota": "is required when ISS is due (exigibilidadeIss 1, 6, 7)"
    }


@pytest.mark.parametrize("item", ["07.02", "07.05", "16.01"])
def test_items_of_art_8a_par1_go_below_two_percent(item: str) -> None:
    built = document(itemListaServico=item, aliquota="1.00")
    assert text(built, "Aliquota") == "1.00"
    assert text(built, "ValorIss") == "10.00"
    assert request(itemListaServico=item, aliquota="0").valores.valor_iss == Decimal("0.00")


@pytest.mark.parametrize(
    ("item", "rate"), [("01.07", "1.99"), ("07.03", "1.00"), ("07.02", "5.01")]
)
def test_rates_outside_the_item_range_are_refused(item: str, rate: str) -> None:
    assert "aliquota" in refused(itemListaServico=item, aliquota=rate)


def test_iss_cannot_be_withheld_when_none_is_due() -> None:
    assert "issRetido" in refused(exigibilidadeIss=3, issRetido=True)


# --- Simples Nacional, regime, incentive -----------------------------------------------------


def test_simples_nacional_regime_and_incentive_are_written() -> None:
    built = document(optanteSimplesNacional=True, regimeEspecialTributacao=6, incentivoFiscal=True)
    assert text(built, "OptanteSimplesNacional") == "1"
    assert text(built, "RegimeEspecialTributacao") == "6"
    assert text(built, "IncentivoFiscal") == "1"
    plain = document()
    assert text(plain, "OptanteSimplesNacional") == "2"
    assert text(plain, "IncentivoFiscal") == "2"
    assert text(plain, "RegimeEspecialTributacao") is None


@pytest.mark.parametrize("value", [0, 7, True, "6", 2.0])
def test_regime_outside_one_to_six_is_refused(value: object) -> None:
    assert "regimeEspecialTributacao" in refused(regimeEspecialTributacao=value)


@pytest.mark.parametrize("value", [0, 8, True, "1"])
def test_exigibilidade_outside_one_to_seven_is_refused(value: object) -> None:
    assert "exigibilidadeIss" in refused(exigibilidadeIss=value)


# --- amounts --------------------------------------------------------------------------------


def test_base_iss_and_net_value_follow_the_formulas() -> None:
    sent = request(
        total="1000.00",
        aliquota="3.00",
        issRetido=True,
        valorDeducoes="100.00",
        descontoIncondicionado="50.00",
        descontoCondicionado="10.00",
        retencoes={
            "pis": "6.50",
            "cofins": "30.00",
            "inss": "11.00",
            "ir": "15.00",
            "csll": "10.00",
            "outras": "1.00",
        },
    )
    valores = sent.valores
    assert valores.base_calculo == Decimal("850.00")  # 1000 - 100 - 50
    assert valores.valor_iss == Decimal("25.50")  # 850 x 3%
    assert valores.valor_iss_retido == Decimal("25.50")
    # 1000 - (6.50 + 30 + 11 + 15 + 10 + 1) - 25.50 - 50 - 10
    assert valores.valor_liquido == Decimal("841.00")
    built = build_gerar_nfse_envio(sent, RpsIdentity(numero=1, serie="A"), "01ABC", TODAY)
    validate_rps_document(built)
    for path, expected in {
        "Valores/ValorServicos": "1000.00",
        "Valores/ValorDeducoes": "100.00",
        "Valores/ValorPis": "6.50",
        "Valores/ValorCofins": "30.00",
        "Valores/ValorInss": "11.00",
        "Valores/ValorIr": "15.00",
        "Valores/ValorCsll": "10.00",
        "Valores/OutrasRetencoes": "1.00",
        "Valores/ValorIss": "25.50",
        "Valores/Aliquota": "3.00",
        "Valores/DescontoIncondicionado": "50.00",
        "Valores/DescontoCondicionado": "10.00",
        "IssRetido": "1",
        "ResponsavelRetencao": "1",
    }.items():
        assert text(built, path) == expected, path


@pytest.mark.parametrize(
    ("base", "rate", "iss"),
    [
        ("100.10", "2.50", "2.50"),  # 2.5025 -> 2.50
        ("100.30", "2.50", "2.51"),  # 2.5075 -> 2.51
        ("100.20", "2.50", "2.50"),  # 2.505 -> 2.50 (5 then zeros, even digit kept)
        ("100.60", "2.50", "2.52"),  # 2.515 -> 2.52 (5 then zeros, odd digit raised)
    ],
)
def test_iss_is_rounded_as_nbr_5891_says(base: str, rate: str, iss: str) -> None:
    assert fiscal.valor_iss(Decimal(base), Decimal(rate)) == Decimal(iss)


def test_deductions_above_the_total_are_refused() -> None:
    assert refused(valorDeducoes="1000.01") == {
        "valorDeducoes": "must not exceed the total 1000.00"
    }
    assert "descontoIncondicionado" in refused(valorDeducoes="600", descontoIncondicionado="400.01")


def test_retentions_and_discounts_above_the_total_are_refused() -> None:
    problems = refused(retencoes={"ir": "999.00"}, descontoCondicionado="1.01")
    assert list(problems) == ["retencoes"]


@pytest.mark.parametrize(
    "field", ["valorDeducoes", "descontoIncondicionado", "descontoCondicionado"]
)
def test_amounts_are_not_negative_and_have_cents(field: str) -> None:
    assert refused(**{field: "-1"}) == {field: "must not be negative"}
    assert refused(**{field: "1.001"}) == {field: "must have at most 2 decimal places"}


def test_each_retention_is_checked_and_named() -> None:
    assert refused(retencoes={"pis": "-0.01", "csll": 1.5}) == {
        "retencoes.pis": "must not be negative",
        "retencoes.csll": "must be an exact decimal (JSON number or string), not a float",
    }
    assert "retencoes.iss" in refused(retencoes={"iss": "1"})


# --- who withholds, intermediary --------------------------------------------------------------


def test_the_tomador_withholds_by_default() -> None:
    assert text(document(issRetido=True), "ResponsavelRetencao") == "1"
    assert text(document(), "ResponsavelRetencao") is None


def test_an_intermediary_withholds_with_its_data() -> None:
    built = document(
        issRetido=True, responsavelRetencao="intermediario", intermediario=INTERMEDIARIO
    )
    assert text(built, "ResponsavelRetencao") == "2"
    assert text(built, "Intermediario/IdentificacaoIntermediario/CpfCnpj/Cnpj") == "11444777000161"
    assert text(built, "Intermediario/RazaoSocial") == "Marketplace Ltda"
    assert text(built, "Intermediario/CodigoMunicipio") == "3304557"


def test_intermediary_rules() -> None:
    assert refused(issRetido=True, responsavelRetencao="intermediario") == {
        "intermediario": "is required when responsavelRetencao is intermediario"
    }
    assert refused(responsavelRetencao="tomador") == {
        "responsavelRetencao": "is only for issRetido true"
    }
    assert refused(intermediario={"cpfCnpj": "11444777000161"}) == {
        "intermediario.razaoSocial": "is required",
        "intermediario.codigoMunicipio": "is required",
    }
    assert "responsavelRetencao" in refused(issRetido=True, responsavelRetencao="prestador")
    for unhashable in ({"a": 1}, ["tomador"]):
        assert refused(issRetido=True, responsavelRetencao=unhashable) == {
            "responsavelRetencao": 'must be "tomador" or "intermediario"'
        }


# --- incidence, export ------------------------------------------------------------------------


def test_incidence_defaults_to_the_prestador_and_may_differ() -> None:
    assert text(document(), "MunicipioIncidencia") == "3550308"
    assert text(document(municipioIncidencia="3304557"), "MunicipioIncidencia") == "3304557"
    assert "municipioIncidencia" in refused(municipioIncidencia="3500006")


def test_an_export_names_the_country_and_a_tomador_abroad() -> None:
    built = document(exigibilidadeIss=4, codigoPais="2496", aliquota=None, tomador=FOREIGN_TOMADOR)
    assert text(built, "CodigoPais") == "2496"
    assert text(built, "MunicipioIncidencia") is None
    assert text(built, "TomadorServico/NifTomador") == "98-7654321"
    assert text(built, "TomadorServico/EnderecoExterior/CodigoPais") == "2496"
    assert text(built, "TomadorServico/IdentificacaoTomador/CpfCnpj/Cpf") is None
    assert refused(exigibilidadeIss=4) == {
        "codigoPais": "is required for an export (exigibilidadeIss 4)"
    }
    assert "codigoPais" in refused(codigoPais="2496")
    assert "codigoPais" in refused(exigibilidadeIss=4, codigoPais="1058")
    assert "municipioIncidencia" in refused(
        exigibilidadeIss=4, codigoPais="2496", municipioIncidencia="3550308"
    )


def test_a_tomador_needs_a_cpf_cnpj_or_a_nif() -> None:
    assert refused(tomador={"razaoSocial": "Sem documento"}) == {
        "tomador.cpfCnpj": "is required (or nif, for a tomador abroad)"
    }


# --- service codes ----------------------------------------------------------------------------


def test_service_codes_are_normalized_and_written_where_the_xsd_puts_them() -> None:
    built = document(
        codigoCnae="6201-5/01", codigoNbs="1.1506.21.00", codigoTributacaoMunicipio="0107-1"
    )
    assert text(built, "CodigoCnae") == "6201501"
    assert text(built, "CodigoNbs") == "115062100"
    assert text(built, "CodigoTributacaoMunicipio") == "0107-1"


def test_service_code_shapes() -> None:
    assert "codigoCnae" in refused(codigoCnae="62015")
    assert "codigoNbs" in refused(codigoNbs="11506")
    assert "codigoTributacaoNacional" in refused(codigoTributacaoNacional="0107")
    assert refused(codigoTributacaoNacional="010801") == {
        "codigoTributacaoNacional": "must begin with 0107, the digits of itemListaServico 01.07"
    }
    assert request(codigoTributacaoNacional="01.07.01").tributacao_nacional == "010701"


# --- dates in the municipality's own time zone ------------------------------------------------


def test_today_is_the_date_where_the_service_is_taxed() -> None:
    body = {**BASE, "competencia": "2026-12-01"}
    # 02:30 UTC on 1 Dec is 23:30 on 30 Nov in Sao Paulo but 00:30 on 1 Dec in Noronha (UTC-2).
    noronha = {**body, "municipio": "2605459"}
    assert parse_invoice_request(noronha, datetime(2026, 12, 1, 2, 30, tzinfo=UTC))
    with pytest.raises(ValidationFailed):
        parse_invoice_request(body, datetime(2026, 12, 1, 2, 30, tzinfo=UTC))
    # 03:30 UTC on 1 Dec is 1 Dec in Sao Paulo, still 30 Nov in Rio Branco (UTC-5).
    acre = {**body, "municipio": "1200401"}
    assert parse_invoice_request(body, datetime(2026, 12, 1, 3, 30, tzinfo=UTC))
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(acre, datetime(2026, 12, 1, 3, 30, tzinfo=UTC))
    assert caught.value.details[0].field == "competencia"
    assert "2026-11-30" in caught.value.details[0].message


def test_competencia_has_a_lower_bound() -> None:
    assert refused(competencia="2003-07-31") == {
        "competencia": "must not be before 2003-08-01 (LC 116/2003 took effect)"
    }
    assert request(competencia="2003-08-01")


def test_ctribnac_is_derived_only_where_the_national_list_has_one_code() -> None:
    assert request().tributacao_nacional == "010701"  # 01.07 has one desdobramento
    assert request().tributacao_nacional_problem() is None
    several = request(itemListaServico="07.02", aliquota="2.00")
    assert several.tributacao_nacional is None
    assert several.tributacao_nacional_problem() == (
        "is required for item 07.02: the national list details it in several codes "
        "(070201, 070202); send the one that applies"
    )
    chosen = request(itemListaServico="07.02", aliquota="2.00", codigoTributacaoNacional="070202")
    assert chosen.tributacao_nacional == "070202"
    assert chosen.tributacao_nacional_problem() is None
