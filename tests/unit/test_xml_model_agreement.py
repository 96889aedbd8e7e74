"""The request model and the ABRASF 2.04 XSD agree: whatever the model accepts builds a valid RPS.

Requests (tests/strategies_request.py, every field of issue 13) are generated to sit where the
two could disagree: texts at and around their XSD lengths, in any script, with astral characters
(one code point, two UTF-16 units), inner whitespace runs (the XSD collapses them), blanks
around (the model strips them); amounts and rates at their limits; every exigibilidade, with
retentions, deductions and discounts up to the total; tomadores at home or abroad, an
intermediario; any RPS. For every request the model accepts, build_gerar_nfse_envio +
validate_rps_document must pass, and the stored bytes must read back (parse_untrusted, then
XPath here, independently of the builder) to the values of the request as the client sent it.

Two documented exceptions remain (checked on every example that hits them):
- a tomador without razaoSocial. tcDadosTomador requires RazaoSocial, the model leaves it
  optional, the builder does not invent a name, and the XSD check answers 422 XSD_INVALID at
  TomadorServico (events/emit/xsd_invalid.json);
- an LC 116 item the 2.04 XSD does not enumerate (added by LC 157/2016 and LC 183/2021): the
  ABRASF plug-in refuses it first (nfse_core.xml.builder.unsupported_fields, a 422 naming the
  item).
"""

from __future__ import annotations

import re
import string
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from nfse_core.domain import rules
from nfse_core.domain.errors import SchemaInvalid, ValidationFailed
from nfse_core.domain.lc116 import abrasf_2_04_items
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes, unsupported_fields
from nfse_core.xml.safe import parse_untrusted
from nfse_core.xml.schema import NFSE_NS
from nfse_core.xml.validate import validate_rps_document
from tests.hypothesis_profiles import examples
from tests.strategies_request import EXPORT, ISS_DUE, TODAY, request_bodies

pytestmark = pytest.mark.unit

NS = {"n": NFSE_NS}
INF = "n:Rps/n:InfDeclaracaoPrestacaoServico"
SERVICO = f"{INF}/n:Servico"
VALORES = f"{SERVICO}/n:Valores"
TOMADOR = f"{INF}/n:TomadorServico"
INTERMEDIARIO = f"{INF}/n:Intermediario"
# Text fields: (JSON path, XSD limit, XPath of the element the builder writes it to).
TEXTS = {
    "discriminacao": (2000, f"{SERVICO}/n:Discriminacao"),
    "inscricaoMunicipal": (15, f"{INF}/n:Prestador/n:InscricaoMunicipal"),
    "codigoTributacaoMunicipio": (20, f"{SERVICO}/n:CodigoTributacaoMunicipio"),
    "numeroProcesso": (30, f"{SERVICO}/n:NumeroProcesso"),
    "tomador.nif": (40, f"{TOMADOR}/n:NifTomador"),
    "tomador.razaoSocial": (150, f"{TOMADOR}/n:RazaoSocial"),
    "tomador.endereco.logradouro": (255, f"{TOMADOR}/n:Endereco/n:Endereco"),
    "tomador.endereco.numero": (60, f"{TOMADOR}/n:Endereco/n:Numero"),
    "tomador.endereco.complemento": (60, f"{TOMADOR}/n:Endereco/n:Complemento"),
    "tomador.endereco.bairro": (60, f"{TOMADOR}/n:Endereco/n:Bairro"),
    "tomador.enderecoExterior.enderecoCompleto": (
        255,
        f"{TOMADOR}/n:EnderecoExterior/n:EnderecoCompletoExterior",
    ),
    "intermediario.razaoSocial": (150, f"{INTERMEDIARIO}/n:RazaoSocial"),
}
# Amounts: (JSON path, XPath); an optional tsValor may be left out when it is zero.
AMOUNTS = {
    "valorDeducoes": f"{VALORES}/n:ValorDeducoes",
    "retencoes.pis": f"{VALORES}/n:ValorPis",
    "retencoes.cofins": f"{VALORES}/n:ValorCofins",
    "retencoes.inss": f"{VALORES}/n:ValorInss",
    "retencoes.ir": f"{VALORES}/n:ValorIr",
    "retencoes.csll": f"{VALORES}/n:ValorCsll",
    "retencoes.outras": f"{VALORES}/n:OutrasRetencoes",
    "descontoIncondicionado": f"{VALORES}/n:DescontoIncondicionado",
    "descontoCondicionado": f"{VALORES}/n:DescontoCondicionado",
}
BLANKS = " \t\n\r\u3000\xa0"
TOMADOR_PATH = "GerarNfseEnvio/Rps/InfDeclaracaoPrestacaoServico/TomadorServico"

# --- text near the XSD limits ----------------------------------------------------------------

# Any character XML 1.0 carries, from every plane; controls other than tab/CR/LF are left out
# (the model refuses them, the property is about what it accepts), so are U+FFFE/U+FFFF.
XML_CHARS = st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\ufffe\uffff")
ASTRAL = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=["Cs"])
ASCII = string.ascii_letters + string.digits + "&<>\"'-./"
ASCII_CHARS = st.characters(categories=[], include_characters=ASCII)
# Runs spliced into a text: astral characters, ASCII with what XML escapes, blank runs.
RUNS = st.one_of(
    st.text(ASTRAL, min_size=1, max_size=8),
    st.text(ASCII, min_size=1, max_size=8),
    st.text(BLANKS, min_size=1, max_size=4),
    st.text(XML_CHARS, min_size=1, max_size=8),
)


@st.composite
def texts(draw: st.DrawFn, limit: int) -> str:
    """Text whose stripped length is 1..limit, often exactly limit, around blanks.

    Its core is one string draw (any XML character, or ASCII) with runs of every class spliced
    in: drawing a 2,000-character text one character at a time costs Hypothesis about 0.1 s."""
    length = draw(st.sampled_from([1, 2, limit - 1, limit]) | st.integers(1, limit))
    length = max(1, min(length, limit))
    base = draw(st.sampled_from([XML_CHARS, ASCII_CHARS]))
    core = draw(st.text(base, min_size=length, max_size=length))
    for at, run in draw(st.lists(st.tuples(st.integers(0, length - 1), RUNS), max_size=8)):
        core = (core[:at] + run + core[at + len(run) :])[:length]
    if not core.strip():
        core = "x" + core[1:]
    if core[0] in BLANKS or core[-1] in BLANKS:  # keep the stripped length at `length`
        core = "x" + core[1:-1] + "x" if length > 1 else "x"
    before = draw(st.text(alphabet=BLANKS, max_size=3))
    after = draw(st.text(alphabet=BLANKS, max_size=3))
    return before + core + after


def totals() -> st.SearchStrategy[Decimal]:
    """Amounts in cents up to the tsValor limit, often at either end."""
    low, high = Decimal("0.01"), rules.MONEY_MAX
    return st.decimals(min_value=low, max_value=high, places=2, allow_nan=False) | st.sampled_from(
        [low, high]
    )


def number_forms(value: Decimal) -> st.SearchStrategy[Any]:
    """A JSON number (Decimal), a numeric string, or a Decimal with another exponent."""
    return st.sampled_from([value, f"{value:f}", Decimal(f"{value:f}") + 0])


def payloads(full: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    # razaoSocial mostly present: without it the request is the documented XSD exception.
    return request_bodies(
        full=full, text=texts, totals=totals(), forms=number_forms, razao_social_odds=5
    )


NON_BLANK = st.characters(exclude_categories=["Cs", "Cc", "Z"], exclude_characters="\ufffe\uffff")
rps_identities = st.builds(
    RpsIdentity,
    numero=st.integers(1, 999_999_999_999_999) | st.sampled_from([1, 999_999_999_999_999]),
    serie=st.text(alphabet=string.ascii_uppercase + string.digits + "-", min_size=1, max_size=5),
    tipo=st.integers(1, 3),
)
invoice_ids = st.from_regex(r"[0-9A-HJKMNP-TV-Z]{26}", fullmatch=True)


# --- helpers ---------------------------------------------------------------------------------


def _get(payload: dict[str, Any], path: str) -> Any:
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _without_razao_social(request: InvoiceRequest) -> bool:
    return request.tomador is not None and request.tomador.razao_social is None


def rules_blanks() -> str:
    """Unicode White_Space, which the model strips (see tests/unit/test_domain_props.py)."""
    return (
        "\t\n\x0b\x0c\r \x85\xa0\u1680"
        + "".join(map(chr, range(0x2000, 0x200B)))
        + ("\u2028\u2029\u202f\u205f\u3000")
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value).strip(rules_blanks())


def _alnum(value: Any) -> str | None:
    """A CPF/CNPJ/CEP/CNAE/NBS as sent, without its punctuation (any dash), in upper case."""
    return None if value is None else re.sub(r"[^0-9A-Za-z]", "", str(value)).upper()


def _cpf_cnpj_path(value: Any) -> str:
    return "n:Cpf" if len(_alnum(value) or "") == 11 else "n:Cnpj"


def _sim_nao(flag: Any) -> str:
    return "1" if flag is True else "2"


def _money(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def expected_elements(payload: dict[str, Any]) -> dict[str, str | None]:
    """XPath -> the text the document must hold (None: absent), from the body as sent."""
    exigibilidade = payload.get("exigibilidadeIss", 1)
    export = exigibilidade == EXPORT
    retido = payload["issRetido"] is True
    expected: dict[str, str | None] = {
        f"{INF}/n:Competencia": payload["competencia"],
        f"{VALORES}/n:ValorServicos": f"{_money(payload['total']):.2f}",
        f"{VALORES}/n:Aliquota": (
            f"{_money(payload['aliquota']):.2f}" if exigibilidade in ISS_DUE else None
        ),
        f"{SERVICO}/n:IssRetido": _sim_nao(retido),
        f"{SERVICO}/n:ResponsavelRetencao": (
            ("2" if payload.get("responsavelRetencao") == "intermediario" else "1")
            if retido
            else None
        ),
        f"{SERVICO}/n:ItemListaServico": payload["itemListaServico"],
        f"{SERVICO}/n:CodigoCnae": _alnum(payload.get("codigoCnae")),
        f"{SERVICO}/n:CodigoNbs": _alnum(payload.get("codigoNbs")),
        f"{SERVICO}/n:CodigoMunicipio": payload["municipio"],
        f"{SERVICO}/n:CodigoPais": payload.get("codigoPais"),
        f"{SERVICO}/n:ExigibilidadeISS": str(exigibilidade),
        f"{SERVICO}/n:MunicipioIncidencia": (
            None if export else payload.get("municipioIncidencia", payload["municipio"])
        ),
        f"{INF}/n:Prestador/n:CpfCnpj/n:Cnpj": _alnum(payload["cnpj"]),
        f"{INF}/n:RegimeEspecialTributacao": (
            None
            if payload.get("regimeEspecialTributacao") is None
            else str(payload["regimeEspecialTributacao"])
        ),
        f"{INF}/n:OptanteSimplesNacional": _sim_nao(payload.get("optanteSimplesNacional")),
        f"{INF}/n:IncentivoFiscal": _sim_nao(payload.get("incentivoFiscal")),
    }
    for path, (_, xpath) in TEXTS.items():
        expected[xpath] = _text(_get(payload, path))
    tomador = payload.get("tomador") or {}
    document = tomador.get("cpfCnpj")
    identificacao = f"{TOMADOR}/n:IdentificacaoTomador/n:CpfCnpj"
    expected[f"{identificacao}/n:Cpf|{identificacao}/n:Cnpj"] = _alnum(document)
    if document is not None:
        expected[f"{identificacao}/{_cpf_cnpj_path(document)}"] = _alnum(document)
    endereco = tomador.get("endereco") or {}
    expected[f"{TOMADOR}/n:Endereco/n:CodigoMunicipio"] = endereco.get("codigoMunicipio")
    expected[f"{TOMADOR}/n:Endereco/n:Uf"] = endereco.get("uf", "").upper() or None
    expected[f"{TOMADOR}/n:Endereco/n:Cep"] = _alnum(endereco.get("cep"))
    exterior = tomador.get("enderecoExterior") or {}
    expected[f"{TOMADOR}/n:EnderecoExterior/n:CodigoPais"] = exterior.get("codigoPais")
    expected[f"{TOMADOR}/n:Contato/n:Email"] = tomador.get("email")
    intermediario = payload.get("intermediario") or {}
    identificacao = f"{INTERMEDIARIO}/n:IdentificacaoIntermediario/n:CpfCnpj"
    expected[f"{identificacao}/n:Cpf|{identificacao}/n:Cnpj"] = _alnum(intermediario.get("cpfCnpj"))
    if intermediario:
        path = f"{identificacao}/{_cpf_cnpj_path(intermediario['cpfCnpj'])}"
        expected[path] = _alnum(intermediario["cpfCnpj"])
    expected[f"{INTERMEDIARIO}/n:CodigoMunicipio"] = intermediario.get("codigoMunicipio")
    return expected


def _texts_at(document: etree._Element, xpath: str) -> list[str | None]:
    found = document.xpath(xpath, namespaces=NS)
    assert isinstance(found, list)
    return [element.text for element in found if isinstance(element, etree._Element)]


def assert_reads_back(document: etree._Element, payload: dict[str, Any]) -> None:
    """Every value of the body is in the document where the XSD puts it, and nothing else."""
    for xpath, value in expected_elements(payload).items():
        assert _texts_at(document, xpath) == ([] if value is None else [value]), xpath
    # Amounts: the value sent, or nothing when it is zero (an absent tsValor reads as zero).
    for path, xpath in AMOUNTS.items():
        found = _texts_at(document, xpath)
        sent = _money(_get(payload, path))
        assert [_money(text) for text in found] in ([sent], [] if sent == 0 else [sent]), path
        assert all(text is not None and re.fullmatch(r"[0-9]+\.[0-9]{2}", text) for text in found)


def assert_valor_iss(document: etree._Element, request: InvoiceRequest) -> None:
    """ValorIss is the request's computed valor_iss: base x rate, within half a cent."""
    found = _texts_at(document, f"{VALORES}/n:ValorIss")
    valores = request.valores
    if valores.valor_iss is None:
        assert found == []
        return
    assert [Decimal(str(text)) for text in found] == [valores.valor_iss]
    assert valores.aliquota is not None
    base = valores.valor_servicos - valores.valor_deducoes - valores.desconto_incondicionado
    assert abs(valores.valor_iss - base * valores.aliquota / 100) <= Decimal("0.005")


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), rps_identities, invoice_ids, st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_every_request_the_model_accepts_builds_a_document_the_xsd_accepts(
    payload: dict[str, Any], rps: RpsIdentity, invoice_id: str, emitted_on: date
) -> None:
    try:
        request = parse_invoice_request(payload, today=TODAY)
    except ValidationFailed as exc:  # the generator draws valid bodies only
        pytest.fail(f"model refused a valid body: {exc.details}")
    document = build_gerar_nfse_envio(request, rps, invoice_id, emitted_on)

    if request.item_lista_servico not in abrasf_2_04_items():
        event("item outside the 2.04 XSD (the plug-in refuses it first)")
        assert [d.field for d in unsupported_fields(request)] == ["itemListaServico"]
        with pytest.raises(SchemaInvalid) as caught:
            validate_rps_document(document)
        assert any("ItemListaServico" in d.field for d in caught.value.details)
        return
    assert unsupported_fields(request) == []

    if _without_razao_social(request):
        event("tomador without razaoSocial (the documented exception)")
        with pytest.raises(SchemaInvalid) as caught:
            validate_rps_document(document)
        (detail,) = caught.value.details
        # libxml2 names TomadorServico (nothing follows) or the element found in its place.
        assert detail.field.startswith(TOMADOR_PATH), detail
        assert "RazaoSocial" in detail.message, detail
        return

    event(f"accepted and XSD-valid, exigibilidade {request.exigibilidade_iss}")
    validate_rps_document(document)

    # What is stored reads back through the hardened parser to the same document and values.
    data = to_bytes(document)
    parsed = parse_untrusted(data)
    assert to_bytes(parsed) == data
    validate_rps_document(parsed)
    assert_reads_back(parsed, payload)
    assert_valor_iss(parsed, request)
    for path, (limit, _) in TEXTS.items():
        value = _text(_get(payload, path))
        assert value is None or 1 <= len(value) <= limit, path


@settings(max_examples=examples(200), deadline=None)
@given(st.data())
def test_one_character_over_the_xsd_limit_is_refused_by_the_model(data: st.DataObject) -> None:
    """The other half of the agreement: the model is not looser than the XSD anywhere."""
    payload = data.draw(payloads(full=True))
    path = data.draw(st.sampled_from(sorted(p for p in TEXTS if _get(payload, p) is not None)))
    limit, _ = TEXTS[path]
    parent, _, leaf = path.rpartition(".")
    node = _get(payload, parent) if parent else payload
    node[leaf] = data.draw(texts(limit)).strip() + data.draw(NON_BLANK)
    node[leaf] = node[leaf][: limit + 1].rjust(limit + 1, "x")
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(payload, today=TODAY)
    assert [d.field for d in caught.value.details] == [path]


def test_the_documented_exception_still_exists() -> None:
    """A tomador without razaoSocial: the model accepts it, the XSD refuses it (422)."""
    payload = {
        "cnpj": "11222333000181",
        "municipio": "3550308",
        "competencia": "2026-03-01",
        "total": "10.00",
        "itemListaServico": "01.07",
        "discriminacao": "Consultoria",
        "aliquota": "5.00",
        "issRetido": False,
        "tomador": {"cpfCnpj": "52998224725"},
    }
    request = parse_invoice_request(payload, today=TODAY)
    document = build_gerar_nfse_envio(request, RpsIdentity(numero=1, serie="1"), "X1", TODAY)
    with pytest.raises(SchemaInvalid) as caught:
        validate_rps_document(document)
    assert caught.value.code == "XSD_INVALID" and caught.value.status == 422
    (detail,) = caught.value.details
    assert detail.field == TOMADOR_PATH
    assert "RazaoSocial" in detail.message
