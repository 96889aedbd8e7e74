"""ABRASF documents per version (2.01-2.04), namespace and value format (DocumentForm).

Every sample request builds, in every form, a document its version's XSD accepts (or
unsupported_fields names what the version cannot carry, and then the XSD refuses the document
built anyway); the consult and cancel documents validate in every form; the XSDs are the
versions' own (nfse_core.xml.schema), compiled once, in the form's namespace.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from nfse_core.domain.errors import SchemaInvalid
from nfse_core.domain.models import InvoiceRequest
from nfse_core.providers.port import RpsKey
from nfse_core.xml.builder import (
    build_gerar_nfse_envio,
    format_aliquota,
    format_data_emissao,
    format_item,
    to_bytes,
    tomador_element,
    unsupported_fields,
)
from nfse_core.xml.documents import build_cancelar_nfse_envio, build_consultar_nfse_rps_envio
from nfse_core.xml.forms import (
    ABRASF_DOCUMENT_NS,
    ABRASF_VERSIONS,
    ALIQUOTA_FORMATS,
    BETHA_DOCUMENT_NS,
    DATE_FORMATS,
    ITEM_FORMATS,
    PLAIN_2_04,
    AbrasfVersion,
    DocumentForm,
)
from nfse_core.xml.safe import parse_untrusted
from nfse_core.xml.schema import (
    abrasf_schema,
    schema_errors,
    schema_for,
    schema_source,
    schema_tree,
    xsd_facts,
)
from nfse_core.xml.validate import SCHEMA_INVALID_MESSAGE, validate_rps_document
from nfse_local.samples import export_body, invoice_body, simples_nacional_body
from tests.hypothesis_profiles import examples
from tests.strategies_request import TODAY, request_bodies
from tests.unit.fixtures_xml import EMITTED_ON, INVOICE_ID, sample_request, sample_rps
from tests.unit.test_xml_model_agreement import texts

pytestmark = pytest.mark.unit

OTHER_NS = "http://example.invalid/family/nfse"
NAMESPACES = (ABRASF_DOCUMENT_NS, BETHA_DOCUMENT_NS, OTHER_NS)
ALL_FORMS = [
    DocumentForm(version, namespace, item, aliquota, day)
    for version in ABRASF_VERSIONS
    for namespace in NAMESPACES
    for item in ITEM_FORMATS
    for aliquota in ALIQUOTA_FORMATS
    for day in DATE_FORMATS
]
# tsItemListaServico is free text (1-5 characters) in 2.01/2.02, the dotted list in 2.03/2.04.
FREE_ITEM_VERSIONS = frozenset({"2.01", "2.02"})


def form_id(form: DocumentForm) -> str:
    ns = {ABRASF_DOCUMENT_NS: "abrasf", BETHA_DOCUMENT_NS: "betha"}.get(form.namespace, "other")
    return f"{form.version}-{ns}-{form.item_format}-{form.aliquota_format}-{form.date_format}"


# nfse_local.samples bills November 2026; the generated bodies are on or before TODAY.
SAMPLES_TODAY = max(TODAY, date(2026, 12, 31))


def request_of(body: dict[str, Any]) -> InvoiceRequest:
    return InvoiceRequest.model_validate(body, context={"today": SAMPLES_TODAY})


def build(request: InvoiceRequest, form: DocumentForm) -> etree._Element:
    return build_gerar_nfse_envio(request, sample_rps(), INVOICE_ID, EMITTED_ON, form)


def find_text(document: etree._Element, form: DocumentForm, path: str) -> str | None:
    steps = "/".join(f"n:{step}" for step in path.split("/"))
    return document.findtext(
        f"n:Rps/n:InfDeclaracaoPrestacaoServico/{steps}", namespaces={"n": form.namespace}
    )


def fields(problems: list[Any]) -> list[str]:
    return [problem.field for problem in problems]


# --- value formats -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "percent", "percent4", "fraction", "fraction4"),
    [
        ("5.00", "5.00", "5.0000", "0.05", "0.0500"),
        ("2.5", "2.50", "2.5000", "0.025", "0.0250"),
        ("2.01", "2.01", "2.0100", "0.0201", "0.0201"),
        ("0", "0.00", "0.0000", "0.00", "0.0000"),
        ("3", "3.00", "3.0000", "0.03", "0.0300"),
    ],
)
def test_aliquota_formats(
    rate: str, percent: str, percent4: str, fraction: str, fraction4: str
) -> None:
    written = {
        fmt: format_aliquota(Decimal(rate), DocumentForm(aliquota_format=fmt))
        for fmt in ALIQUOTA_FORMATS
    }

    assert written == {
        "percent": percent,
        "percent4": percent4,
        "fraction": fraction,
        "fraction4": fraction4,
    }
    # Every form writes the same rate: a percent, or its hundredth.
    assert Decimal(written["percent"]) == Decimal(written["percent4"]) == Decimal(rate)
    assert (
        Decimal(written["fraction"]) * 100 == Decimal(written["fraction4"]) * 100 == Decimal(rate)
    )


def test_item_and_date_formats() -> None:
    assert format_item("01.07", DocumentForm(item_format="dotted")) == "01.07"
    assert format_item("17.25", DocumentForm(item_format="digits")) == "1725"
    day = date(2026, 12, 2)
    assert format_data_emissao(day, DocumentForm(date_format="date")) == "2026-12-02"
    assert format_data_emissao(day, DocumentForm(date_format="datetime")) == "2026-12-02T00:00:00"


# --- every form, the sample requests -------------------------------------------------------

SAMPLES: dict[str, Callable[[], InvoiceRequest]] = {
    "fixture": sample_request,
    "invoice_body": lambda: request_of(invoice_body()),
    "simples_nacional": lambda: request_of(simples_nacional_body()),
    "iss_retido": lambda: sample_request(issRetido=True, descontoIncondicionado=Decimal("10.00")),
}


@pytest.mark.parametrize("form", ALL_FORMS, ids=form_id)
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_sample_requests_build_a_valid_document_in_every_form(
    sample: str, form: DocumentForm
) -> None:
    request = SAMPLES[sample]()
    document = build(request, form)

    assert document.nsmap == {None: form.namespace}
    assert all(etree.QName(node).namespace == form.namespace for node in document.iter())
    assert find_text(document, form, "Servico/ItemListaServico") == format_item(
        request.item_lista_servico, form
    )
    assert find_text(document, form, "Rps/DataEmissao") == format_data_emissao(EMITTED_ON, form)
    assert request.valores.aliquota is not None
    assert find_text(document, form, "Servico/Valores/Aliquota") == format_aliquota(
        request.valores.aliquota, form
    )
    tomador = find_text(document, form, f"{tomador_element(form.version)}/RazaoSocial")
    assert tomador == "Maria da Silva"

    problems = unsupported_fields(request, form)
    if form.item_format == "digits" and form.version not in FREE_ITEM_VERSIONS:
        assert fields(problems) == ["itemListaServico"]
        with pytest.raises(SchemaInvalid) as caught:
            validate_rps_document(document, form)
        assert {d.field.rsplit("/", 1)[-1] for d in caught.value.details} == {"ItemListaServico"}
        return
    assert problems == []
    validate_rps_document(document, form)
    # What is stored and sent reads back valid too.
    assert schema_errors(parse_untrusted(to_bytes(document)), form) == []


def test_the_default_form_is_todays_document() -> None:
    request = sample_request()

    assert to_bytes(
        build_gerar_nfse_envio(request, sample_rps(), INVOICE_ID, EMITTED_ON)
    ) == to_bytes(build(request, PLAIN_2_04))
    assert b'<GerarNfseEnvio xmlns="http://www.abrasf.org.br/nfse.xsd">' in to_bytes(
        build(request, PLAIN_2_04)
    )


# --- what each version has, lacks, or names otherwise --------------------------------------


@pytest.mark.parametrize("version", ABRASF_VERSIONS)
def test_the_tomador_element_is_the_versions(version: AbrasfVersion) -> None:
    facts = xsd_facts(version)
    other = "Tomador" if tomador_element(version) == "TomadorServico" else "TomadorServico"

    assert facts.has_complex_element("tcInfDeclaracaoPrestacaoServico", tomador_element(version))
    assert not facts.has_complex_element("tcInfDeclaracaoPrestacaoServico", other)


# (version, the fields of export_body it cannot carry): NifTomador from 2.03, EnderecoExterior
# only in 2.04.
EXPORT_UNSUPPORTED = {
    "2.01": ["tomador.nif", "tomador.enderecoExterior"],
    "2.02": ["tomador.nif", "tomador.enderecoExterior"],
    "2.03": ["tomador.enderecoExterior"],
    "2.04": [],
}
INTERMEDIARIO = {
    "cpfCnpj": "11444777000161",
    "razaoSocial": "Intermediadora Ltda",
    "codigoMunicipio": "3550308",
}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ("export", EXPORT_UNSUPPORTED),
        (
            {"codigoNbs": "115022000"},
            {"2.01": ["codigoNbs"], "2.02": ["codigoNbs"], "2.03": [], "2.04": []},
        ),
        (
            {"intermediario": INTERMEDIARIO},
            {
                "2.01": ["intermediario.codigoMunicipio"],
                "2.02": ["intermediario.codigoMunicipio"],
                "2.03": [],
                "2.04": [],
            },
        ),
        (
            {"itemListaServico": "17.25"},  # LC 157/2016: not in the 2.03/2.04 enumeration
            {"2.01": [], "2.02": [], "2.03": ["itemListaServico"], "2.04": ["itemListaServico"]},
        ),
        (
            {
                "ibsCbs": {
                    "cst": "000",
                    "classificacaoTributaria": "000001",
                    "indicadorOperacao": "100301",
                }
            },
            {version: ["ibsCbs"] for version in ABRASF_VERSIONS},
        ),
    ],
    ids=["export", "codigoNbs", "intermediario", "lc157-item", "ibsCbs"],
)
@pytest.mark.parametrize("namespace", NAMESPACES, ids=["abrasf", "betha", "other"])
def test_what_a_version_has_no_place_for_is_named_and_the_rest_validates(
    overrides: Any, expected: dict[str, list[str]], namespace: str
) -> None:
    request = request_of(export_body() if overrides == "export" else invoice_body(**overrides))
    for version in ABRASF_VERSIONS:
        form = DocumentForm(version, namespace)
        problems = unsupported_fields(request, form)
        document = build(request, form)

        assert fields(problems) == expected[version], version
        assert all(f"ABRASF {version}" in problem.message for problem in problems)
        errors = schema_errors(document, form)
        # The builder writes what was asked; the XSD refuses what the version has no place for
        # (the IBS/CBS is never written, so it is only refused).
        assert (errors != []) == any(field != "ibsCbs" for field in fields(problems)), version


def test_an_address_longer_than_the_versions_tsendereco_is_named() -> None:
    endereco = invoice_body()["tomador"]["endereco"] | {
        "logradouro": "R" * 200,
        "numero": "12345678901",
    }
    request = request_of(invoice_body(tomador=invoice_body()["tomador"] | {"endereco": endereco}))

    for version in ("2.01", "2.02", "2.03"):
        form = DocumentForm(version)
        assert fields(unsupported_fields(request, form)) == [
            "tomador.endereco.logradouro",
            "tomador.endereco.numero",
        ]
        with pytest.raises(SchemaInvalid):
            validate_rps_document(build(request, form), form)
    assert unsupported_fields(request, PLAIN_2_04) == []
    validate_rps_document(build(request, PLAIN_2_04))


@pytest.mark.parametrize("fmt", ["fraction", "fraction4"])
def test_a_fraction_rate_with_three_decimals_fits_only_the_four_decimal_tsaliquota(
    fmt: Any,
) -> None:
    request = sample_request(aliquota=Decimal("2.50"))  # 0.025

    for version in ABRASF_VERSIONS:
        form = DocumentForm(version, aliquota_format=fmt)
        problems = unsupported_fields(request, form)
        errors = schema_errors(build(request, form), form)
        if version in ("2.01", "2.02"):  # tsAliquota: fractionDigits 4
            assert problems == []
            assert errors == []
        else:  # fractionDigits 2
            assert fields(problems) == ["aliquota"]
            assert errors


# --- the XSDs ------------------------------------------------------------------------------


def test_schemas_are_compiled_once_and_the_default_is_todays() -> None:
    form = DocumentForm("2.02", BETHA_DOCUMENT_NS)

    assert schema_for(form) is schema_for(DocumentForm("2.02", BETHA_DOCUMENT_NS, "digits"))
    assert schema_for(PLAIN_2_04) is abrasf_schema()
    assert schema_for(DocumentForm("2.04", date_format="datetime")) is not abrasf_schema()


def test_nothing_is_compiled_at_import() -> None:
    code = (
        "import nfse_core.xml.builder, nfse_core.xml.validate, nfse_core.xml.documents\n"
        "from nfse_core.xml import schema\n"
        "print(schema.schema_tree.cache_info().currsize,"
        " schema.abrasf_schema.cache_info().currsize,"
        " schema._compiled.cache_info().currsize)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.split() == ["0", "0", "0"]


@pytest.mark.parametrize(
    ("version", "namespace", "file", "rewritten"),
    [
        ("2.01", ABRASF_DOCUMENT_NS, "ABRASF/nfse_v2_01.xsd", False),
        ("2.02", ABRASF_DOCUMENT_NS, "ABRASF/nfse_v2_02.xsd", False),
        ("2.02", BETHA_DOCUMENT_NS, "BETHA/nfse_v202.xsd", False),
        ("2.03", ABRASF_DOCUMENT_NS, "DESENVOLVECIDADE/nfsev203.xsd", False),
        ("2.04", ABRASF_DOCUMENT_NS, "ISSNET/nfse_v2-04.xsd", False),
        ("2.04", BETHA_DOCUMENT_NS, "ISSNET/nfse_v2-04.xsd", True),
        ("2.01", OTHER_NS, "ABRASF/nfse_v2_01.xsd", True),
    ],
)
def test_each_form_gets_its_versions_xsd_in_its_namespace(
    version: AbrasfVersion, namespace: str, file: str, rewritten: bool
) -> None:
    path, rewrite = schema_source(version, namespace)

    assert path.as_posix().endswith(f"schemas/NFSe/{file}")
    assert rewrite is rewritten
    root = schema_tree(version, namespace).getroot()
    assert root.get("targetNamespace") == namespace
    assert root.nsmap[None] == namespace


def test_a_document_in_another_namespace_than_the_forms_is_refused() -> None:
    form = DocumentForm("2.03", OTHER_NS)
    document = build(sample_request(), form)
    moved = etree.fromstring(
        to_bytes(document).replace(OTHER_NS.encode(), ABRASF_DOCUMENT_NS.encode())
    )

    validate_rps_document(document, form)
    validate_rps_document(moved, DocumentForm("2.03"))
    with pytest.raises(SchemaInvalid) as caught:
        validate_rps_document(moved, form)
    assert caught.value.message == (
        f"The RPS document does not satisfy the ABRASF 2.03 schema in the namespace {OTHER_NS}"
    )


@pytest.mark.parametrize("version", ABRASF_VERSIONS)
def test_data_emissao_is_a_date_unless_the_form_says_datetime(version: AbrasfVersion) -> None:
    as_date = DocumentForm(version)
    as_datetime = DocumentForm(version, date_format="datetime")
    request = sample_request()

    # Each document validates in its own form only: every 2.0x XSD types it xsd:date.
    assert schema_errors(build(request, as_date), as_date) == []
    assert schema_errors(build(request, as_datetime), as_datetime) == []
    assert any("DataEmissao" in e for e in schema_errors(build(request, as_datetime), as_date))
    assert any("DataEmissao" in e for e in schema_errors(build(request, as_date), as_datetime))


def test_the_default_message_is_unchanged_and_others_name_the_version() -> None:
    document = build(sample_request(), PLAIN_2_04)
    document.find(".//{*}Competencia").text = "x"  # type: ignore[union-attr]

    with pytest.raises(SchemaInvalid) as caught:
        validate_rps_document(document)
    assert caught.value.message == SCHEMA_INVALID_MESSAGE
    with pytest.raises(SchemaInvalid) as caught:
        validate_rps_document(build(sample_request(), PLAIN_2_04), DocumentForm("2.01"))
    assert caught.value.message == "The RPS document does not satisfy the ABRASF 2.01 schema"


@pytest.mark.parametrize("namespace", ['http://x/"y', "", "a b"])
def test_a_namespace_that_cannot_be_an_attribute_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="targetNamespace"):
        schema_for(DocumentForm("2.02", namespace))


# --- consult and cancel --------------------------------------------------------------------

DOCUMENT_FORMS = [
    DocumentForm(version, namespace) for version in ABRASF_VERSIONS for namespace in NAMESPACES
]


@pytest.mark.parametrize("form", DOCUMENT_FORMS, ids=form_id)
@pytest.mark.parametrize("inscricao", ["12345678", None])
@pytest.mark.parametrize("cpf_cnpj", ["11222333000181", "52998224725"])
def test_consult_and_cancel_validate_in_every_form(
    form: DocumentForm, inscricao: str | None, cpf_cnpj: str
) -> None:
    consult = build_consultar_nfse_rps_envio(
        RpsKey(cnpj=cpf_cnpj, inscricao_municipal=inscricao, numero=42, serie="A1", tipo=1), form
    )
    cancel = build_cancelar_nfse_envio(
        numero_nfse="2026000000123",
        cnpj=cpf_cnpj,
        inscricao_municipal=inscricao,
        codigo_municipio="3550308",
        codigo_cancelamento=2,
        pedido_id="cancel123",
        form=form,
    )

    for document in (consult, cancel):
        assert document.nsmap == {None: form.namespace}
        assert schema_errors(document, form) == []
        assert schema_errors(document, DocumentForm(form.version, OTHER_NS + "/elsewhere")) != []
    assert consult.findtext("n:IdentificacaoRps/n:Serie", namespaces={"n": form.namespace}) == "A1"
    pedido = cancel.find("n:Pedido/n:InfPedidoCancelamento", {"n": form.namespace})
    assert pedido is not None
    assert pedido.get("Id") == "cancel123"


@pytest.mark.parametrize("codigo", [0, 6])
def test_cancel_refuses_a_code_outside_the_xsds(codigo: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.5"):
        build_cancelar_nfse_envio(
            numero_nfse="1",
            cnpj="11222333000181",
            inscricao_municipal=None,
            codigo_municipio="3550308",
            codigo_cancelamento=codigo,
            pedido_id="c1",
        )


# --- any valid request, any form ------------------------------------------------------------


def forms(version: AbrasfVersion) -> st.SearchStrategy[DocumentForm]:
    return st.builds(
        DocumentForm,
        version=st.just(version),
        namespace=st.sampled_from(NAMESPACES),
        item_format=st.sampled_from(ITEM_FORMATS),
        aliquota_format=st.sampled_from(ALIQUOTA_FORMATS),
        date_format=st.sampled_from(DATE_FORMATS),
    )


@pytest.mark.parametrize("version", ABRASF_VERSIONS)
@settings(max_examples=examples(800), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        request_bodies(), request_bodies(text=texts), request_bodies(full=True, text=texts)
    ),
    data=st.data(),
)
def test_any_valid_request_validates_in_every_form_or_is_named(
    version: AbrasfVersion, body: dict[str, Any], data: st.DataObject
) -> None:
    form = data.draw(forms(version))
    request = request_of(body)
    problems = fields(unsupported_fields(request, form))
    errors = schema_errors(build(request, form), form)

    tomador = request.tomador
    if form.version == "2.04" and tomador is not None and tomador.razao_social is None:
        # The documented exception (test_xml_model_agreement): RazaoSocial is required by the
        # 2.04 tcDadosTomador only, and the builder does not invent a name.
        event("2.04 tomador without razaoSocial")
        assert errors
        return
    written = [field for field in problems if field != "ibsCbs"]
    event(f"{form.version}: {'named' if written else 'valid'}")
    assert (errors == []) == (written == []), (problems, errors)
