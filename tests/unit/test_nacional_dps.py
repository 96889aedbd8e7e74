"""The NFS-e Nacional DPS: built from the request, valid against nfelib's DPS 1.01 XSD, values
read back by XPath, and what the DPS cannot carry refused before numbering."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from nfse_core.domain.errors import SchemaInvalid, ValidationFailed
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.providers.abrasf_2 import DOCUMENT as ABRASF
from nfse_core.providers.nacional import ids
from nfse_core.providers.nacional.document import DOCUMENT, STANDARD, NacionalDocument
from nfse_core.providers.nacional.dps import (
    BACEN_TO_ISO,
    build_dps,
    emission_moment,
    n_processo,
)
from nfse_core.providers.nacional.schema import NACIONAL_NS, dps_errors, nfse_errors
from nfse_local.samples import invoice_body, nacional_body
from tests.unit.fixtures_xml import (
    EMITTED_ON,
    INVOICE_ID,
    TOMADOR_CNPJ,
    sample_request,
    sample_rps,
    sample_tomador,
)

pytestmark = pytest.mark.unit

NS = {"n": NACIONAL_NS}
PROCESSO = "0001234-56.2024.8.26.0100"


def nacional_request(**overrides: Any) -> InvoiceRequest:
    """The XML tests' sample with a cTribMun the DPS accepts (3 digits)."""
    overrides.setdefault("codigoTributacaoMunicipio", None)
    return sample_request(**overrides)


def build(request: InvoiceRequest, numero: int = 42, serie: str = "1") -> etree._Element:
    document = DOCUMENT.build_document(request, sample_rps(numero, serie), INVOICE_ID, EMITTED_ON)
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(document)
    assert dps_errors(root) == []
    return root


def text(root: etree._Element, path: str) -> str | None:
    """The text of the one element at `path` under infDPS (None when absent)."""
    found = root.xpath(
        f"n:infDPS/{'/'.join('n:' + step for step in path.split('/'))}", namespaces=NS
    )
    assert isinstance(found, list)
    assert len(found) <= 1, path
    return found[0].text if found else None  # type: ignore[union-attr]


def test_plain_invoice_is_valid_and_reads_back() -> None:
    request = nacional_request()
    root = build(request)
    assert root.tag == f"{{{NACIONAL_NS}}}DPS"
    assert root.get("versao") == "1.01"
    inf = root.find("n:infDPS", NS)
    assert inf is not None
    assert inf.get("Id") == ids.dps_id("3550308", "11222333000181", "1", 42)
    assert len(inf.get("Id", "")) == ids.DPS_ID_LENGTH
    expected = {
        "tpAmb": "2",
        "dhEmi": "2025-03-10T00:00:00-03:00",
        "serie": "1",
        "nDPS": "42",
        "dCompet": "2025-03-01",
        "tpEmit": "1",
        "cLocEmi": "3550308",
        "prest/CNPJ": "11222333000181",
        "prest/IM": "12345678",
        "prest/regTrib/opSimpNac": "1",
        "prest/regTrib/regEspTrib": "0",
        "prest/regTrib/regApTribSN": None,
        "toma/CPF": "52998224725",
        "toma/xNome": "Maria da Silva",
        "toma/email": "maria@example.com",
        "toma/end/endNac/cMun": "3550308",
        "toma/end/endNac/CEP": "01310100",
        "toma/end/xLgr": "Avenida Paulista",
        "toma/end/nro": "1000",
        "toma/end/xCpl": "Conjunto 12",
        "toma/end/xBairro": "Bela Vista",
        "serv/locPrest/cLocPrestacao": "3550308",
        "serv/cServ/cTribNac": "010701",
        "serv/cServ/xDescServ": request.discriminacao,
        "valores/vServPrest/vServ": "1500.00",
        "valores/vDescCondIncond": None,
        "valores/vDedRed": None,
        "valores/trib/tribMun/tribISSQN": "1",
        "valores/trib/tribMun/tpRetISSQN": "1",
        # The emitting municipality's rate is parametrized in the Sistema Nacional.
        "valores/trib/tribMun/pAliq": None,
        "valores/trib/tribFed": None,
        "valores/trib/totTrib/indTotTrib": "0",
        "interm": None,
    }
    assert {path: text(root, path) for path in expected} == expected


def test_the_document_is_a_function_of_its_arguments() -> None:
    request = nacional_request()
    first = DOCUMENT.build_document(request, sample_rps(), INVOICE_ID, EMITTED_ON)
    assert DOCUMENT.build_document(request, sample_rps(), "other-id", EMITTED_ON) == first
    assert DOCUMENT.standard == STANDARD == "nacional-1.01"


def test_dh_emi_is_midnight_in_the_municipality_zone() -> None:
    manaus = nacional_request(municipio="1302603", tomador=None)
    assert text(build(manaus), "dhEmi") == "2025-03-10T00:00:00-04:00"
    moment = emission_moment(date(2025, 3, 10), "3550308")
    assert moment.utcoffset() is not None
    # A datetime from elsewhere is written in the municipality's zone, to the second.
    at = datetime(2025, 3, 10, 15, 4, 5, 123456, tzinfo=UTC)
    root = build_dps(nacional_request(), sample_rps(), at)
    assert text(root, "dhEmi") == "2025-03-10T12:04:05-03:00"


def test_ambiente_and_serie() -> None:
    producao = NacionalDocument(ambiente=1)
    root = etree.fromstring(
        producao.build_document(nacional_request(), sample_rps(7, "00900"), "x", EMITTED_ON)
    )
    assert text(root, "tpAmb") == "1"
    assert text(root, "serie") == "00900"
    assert root.find("n:infDPS", NS).get("Id").endswith("00900000000000000007")  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="tpAmb"):
        build_dps(
            nacional_request(), sample_rps(), emission_moment(EMITTED_ON, "3550308"), ambiente=3
        )


@pytest.mark.parametrize(
    ("overrides", "op_simp_nac", "reg_ap", "reg_esp"),
    [
        ({"optanteSimplesNacional": True}, "3", "1", "0"),
        ({"regimeEspecialTributacao": 6}, "3", "1", "0"),
        ({"regimeEspecialTributacao": 5}, "2", None, "0"),
        ({"regimeEspecialTributacao": 1}, "1", None, "3"),
        ({"regimeEspecialTributacao": 2}, "1", None, "2"),
        ({"regimeEspecialTributacao": 3}, "1", None, "6"),
        ({"regimeEspecialTributacao": 4, "optanteSimplesNacional": True}, "3", "1", "1"),
    ],
)
def test_simples_nacional_and_special_regimes(
    overrides: dict[str, Any], op_simp_nac: str, reg_ap: str | None, reg_esp: str
) -> None:
    root = build(nacional_request(**overrides))
    assert text(root, "prest/regTrib/opSimpNac") == op_simp_nac
    assert text(root, "prest/regTrib/regApTribSN") == reg_ap
    assert text(root, "prest/regTrib/regEspTrib") == reg_esp


def test_export() -> None:
    request = nacional_request(
        exigibilidadeIss=4,
        codigoPais="2496",
        aliquota=None,
        tomador={"nif": "123-45-6789", "razaoSocial": "ACME Inc.", "email": "ap@acme.example"},
    )
    assert DOCUMENT.unsupported(request) == []
    root = build(request)
    assert text(root, "valores/trib/tribMun/tribISSQN") == "3"
    assert text(root, "valores/trib/tribMun/cPaisResult") == "US"
    assert text(root, "valores/trib/tribMun/pAliq") is None
    assert text(root, "serv/locPrest/cLocPrestacao") == "3550308"
    assert text(root, "toma/NIF") == "123-45-6789"
    assert text(root, "toma/xNome") == "ACME Inc."
    assert text(root, "toma/end") is None


def test_retention_by_the_tomador() -> None:
    request = nacional_request(issRetido=True, tomador=sample_tomador(TOMADOR_CNPJ))
    root = build(request)
    assert text(root, "valores/trib/tribMun/tpRetISSQN") == "2"
    assert text(root, "toma/CNPJ") == TOMADOR_CNPJ


def test_retention_by_the_intermediary() -> None:
    request = nacional_request(
        issRetido=True,
        responsavelRetencao="intermediario",
        intermediario={
            "cpfCnpj": TOMADOR_CNPJ,
            "razaoSocial": "Intermediadora Ltda",
            "codigoMunicipio": "3304557",
        },
    )
    root = build(request)
    assert text(root, "valores/trib/tribMun/tpRetISSQN") == "3"
    assert text(root, "interm/CNPJ") == TOMADOR_CNPJ
    assert text(root, "interm/xNome") == "Intermediadora Ltda"


@pytest.mark.parametrize(
    ("exigibilidade", "trib_issqn", "tp_susp"),
    [(2, "4", None), (5, "2", None), (6, "1", "1"), (7, "1", "2")],
)
def test_exigibilidade(exigibilidade: int, trib_issqn: str, tp_susp: str | None) -> None:
    suspended = tp_susp is not None
    request = nacional_request(
        exigibilidadeIss=exigibilidade,
        aliquota=Decimal("5.00") if suspended else None,
        numeroProcesso=PROCESSO if suspended else None,
    )
    root = build(request)
    assert text(root, "valores/trib/tribMun/tribISSQN") == trib_issqn
    assert text(root, "valores/trib/tribMun/exigSusp/tpSusp") == tp_susp
    expected_processo = "0000000000" + "00012345620248260100" if suspended else None
    assert text(root, "valores/trib/tribMun/exigSusp/nProcesso") == expected_processo


def test_exemption_is_refused() -> None:
    request = nacional_request(exigibilidadeIss=3, aliquota=None)
    assert [e.field for e in DOCUMENT.unsupported(request)] == ["exigibilidadeIss"]


def test_deductions_discounts_and_federal_retentions() -> None:
    request = nacional_request(
        valorDeducoes=Decimal("100.00"),
        descontoIncondicionado=Decimal("50.00"),
        descontoCondicionado=Decimal("10.00"),
        retencoes={"inss": "16.50", "ir": "22.50", "csll": "15.00"},
    )
    root = build(request)
    assert text(root, "valores/vDescCondIncond/vDescIncond") == "50.00"
    assert text(root, "valores/vDescCondIncond/vDescCond") == "10.00"
    assert text(root, "valores/vDedRed/vDR") == "100.00"
    assert text(root, "valores/trib/tribFed/vRetCP") == "16.50"
    assert text(root, "valores/trib/tribFed/vRetIRRF") == "22.50"
    assert text(root, "valores/trib/tribFed/vRetCSLL") == "15.00"
    only_discount = build(nacional_request(descontoCondicionado=Decimal("10.00")))
    assert text(only_discount, "valores/vDescCondIncond/vDescIncond") is None


def test_rate_is_informed_for_another_municipality_of_incidence() -> None:
    request = nacional_request(
        itemListaServico="07.05",
        codigoTributacaoNacional="070501",
        municipioIncidencia="3304557",
        aliquota=Decimal("3.00"),
    )
    root = build(request)
    assert text(root, "valores/trib/tribMun/pAliq") == "3.00"
    assert text(root, "serv/locPrest/cLocPrestacao") == "3304557"


def test_service_codes() -> None:
    root = build(nacional_request(codigoTributacaoMunicipio="001", codigoNbs="1.1506.21.00"))
    assert text(root, "serv/cServ/cTribMun") == "001"
    assert text(root, "serv/cServ/cNBS") == "115062100"


def test_missing_ctribnac_is_refused() -> None:
    request = nacional_request(itemListaServico="07.02", aliquota=Decimal("2.00"))
    errors = DOCUMENT.unsupported(request)
    assert [e.field for e in errors] == ["codigoTributacaoNacional"]
    assert "070201" in errors[0].message
    assert "070202" in errors[0].message
    chosen = nacional_request(
        itemListaServico="07.02", codigoTributacaoNacional="070202", aliquota=Decimal("2.00")
    )
    assert DOCUMENT.unsupported(chosen) == []
    assert text(build(chosen), "serv/cServ/cTribNac") == "070202"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"exigibilidadeIss": 4, "codigoPais": "9999", "aliquota": None},
            "codigoPais",
        ),
        ({"codigoTributacaoMunicipio": "010701"}, "codigoTributacaoMunicipio"),
        ({"retencoes": {"pis": "9.75"}}, "retencoes.pis"),
        ({"retencoes": {"cofins": "45.00"}}, "retencoes.cofins"),
        ({"retencoes": {"outras": "1.00"}}, "retencoes.outras"),
        ({"codigoCnae": "6201501"}, "codigoCnae"),
        ({"incentivoFiscal": True}, "incentivoFiscal"),
        (
            {"exigibilidadeIss": 6, "numeroProcesso": "MS 123/2024", "aliquota": "5.00"},
            "numeroProcesso",
        ),
        (
            {"tomador": {"cpfCnpj": TOMADOR_CNPJ, "email": "a@b.example"}},
            "tomador.razaoSocial",
        ),
        (
            {
                "tomador": {
                    "nif": "X1",
                    "razaoSocial": "ACME",
                    "enderecoExterior": {"codigoPais": "2496", "enderecoCompleto": "1 Main St"},
                }
            },
            "tomador.enderecoExterior",
        ),
        (
            {
                "tomador": {
                    **sample_tomador(),
                    "endereco": {**sample_tomador()["endereco"], "logradouro": "Rua Ω"},
                }
            },
            "tomador.endereco.logradouro",
        ),
    ],
)
def test_what_the_dps_cannot_carry_is_refused(overrides: dict[str, Any], field: str) -> None:
    assert [e.field for e in DOCUMENT.unsupported(nacional_request(**overrides))] == [field]


def test_a_request_built_anyway_fails_the_xsd_with_element_paths() -> None:
    request = nacional_request(tomador={"cpfCnpj": TOMADOR_CNPJ})
    with pytest.raises(SchemaInvalid) as raised:
        DOCUMENT.build_document(request, sample_rps(), INVOICE_ID, EMITTED_ON)
    fields = [detail.field for detail in raised.value.details]
    assert any(field.startswith("DPS/infDPS/") for field in fields), fields


def test_country_table_and_process_numbers() -> None:
    assert all(len(code) == 4 and code.isdigit() for code in BACEN_TO_ISO)
    assert all(len(iso) == 2 and iso.isupper() for iso in BACEN_TO_ISO.values())
    assert len(set(BACEN_TO_ISO.values())) == len(BACEN_TO_ISO)
    assert n_processo("1" * 30) == "1" * 30
    assert n_processo("1" * 31) is None
    assert n_processo("12/2024") == "0" * 24 + "122024"


def test_nfse_schema_loads_from_nfelib() -> None:
    assert nfse_errors(etree.fromstring(b"<NFSe xmlns='http://www.sped.fazenda.gov.br/nfse'/>"))


def test_an_alphanumeric_cnpj_is_refused_before_numbering() -> None:
    """TSCNPJ of the DPS 1.01 is [0-9]{14}: the alphanumeric CNPJ cannot be carried yet."""
    request = parse_invoice_request(nacional_body("12ABC34501DE35"), date(2026, 11, 30))
    (problem,) = DOCUMENT.unsupported(request)
    assert problem.field == "cnpj" and "numeric CNPJ" in problem.message
    assert DOCUMENT.unsupported(parse_invoice_request(nacional_body(), date(2026, 11, 30))) == []


IBS_CBS = {
    "cst": "000",
    "classificacaoTributaria": "000001",
    "indicadorOperacao": "100301",
    "destinatarioDiferente": True,
    "usoConsumoPessoal": False,
}


def test_the_ibs_cbs_group_is_written_where_the_dps_puts_it() -> None:
    request = parse_invoice_request(nacional_body(ibsCbs=IBS_CBS), date(2026, 11, 30))
    built = etree.fromstring(
        DOCUMENT.build_document(request, RpsIdentity(numero=3, serie="1"), "X", date(2026, 11, 30))
    )
    assert dps_errors(built) == []
    group = built.find(f".//{{{NACIONAL_NS}}}IBSCBS")
    assert group is not None and group.getprevious().tag == f"{{{NACIONAL_NS}}}valores"

    def read(path: str) -> str | None:
        return group.findtext("/".join(f"{{{NACIONAL_NS}}}{step}" for step in path.split("/")))

    assert (read("finNFSe"), read("indFinal"), read("cIndOp"), read("indDest")) == (
        "0",
        "0",
        "100301",
        "1",
    )
    assert read("valores/trib/gIBSCBS/CST") == "000"
    assert read("valores/trib/gIBSCBS/cClassTrib") == "000001"
    plain = parse_invoice_request(nacional_body(), date(2026, 11, 30))
    document = DOCUMENT.build_document(
        plain, RpsIdentity(numero=4, serie="1"), "X", date(2026, 11, 30)
    )
    assert b"IBSCBS" not in document


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cst": "00"}, "ibsCbs.cst"),
        ({"classificacaoTributaria": "1234567"}, "ibsCbs.classificacaoTributaria"),
        ({"indicadorOperacao": "abc123"}, "ibsCbs.indicadorOperacao"),
        ({"destinatarioDiferente": "yes"}, "ibsCbs.destinatarioDiferente"),
        ({"outro": 1}, "ibsCbs.outro"),
    ],
)
def test_ibs_cbs_codes_are_checked_by_their_shape(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(nacional_body(ibsCbs=IBS_CBS | change), date(2026, 11, 30))
    assert [d.field for d in caught.value.details] == [field]


def test_abrasf_2_04_refuses_ibs_cbs_before_numbering() -> None:
    request = parse_invoice_request(invoice_body(ibsCbs=IBS_CBS), date(2026, 11, 30))
    (problem,) = ABRASF.unsupported(request)
    assert problem.field == "ibsCbs" and "no IBS/CBS group" in problem.message
