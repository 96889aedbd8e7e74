"""The request model and the ABRASF 2.04 XSD agree: whatever the model accepts builds a valid RPS.

Requests are generated to sit where the two could disagree: texts at and around their XSD
lengths, in any script, with astral characters (one code point, two UTF-16 units), inner
whitespace runs (the XSD collapses them), blanks around (the model strips them); amounts and
rates at their limits; any RPS number, series and type; CPF or CNPJ tomadores with or without
each optional part. For every request the model accepts, build_gerar_nfse_envio +
validate_rps_document must pass, and the stored bytes must read back (parse_untrusted) to the
same texts and validate again.

The one documented exception still exists (checked on every example that hits it): a tomador
without razaoSocial. tcDadosTomador requires RazaoSocial, the model leaves it optional, the
builder does not invent a name, and the XSD check answers 422 XSD_INVALID at TomadorServico
(events/emit/xsd_invalid.json).
"""

from __future__ import annotations

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
from nfse_core.domain.lc116 import LC116_ITEMS
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes
from nfse_core.xml.safe import parse_untrusted
from nfse_core.xml.schema import NFSE_NS
from nfse_core.xml.validate import validate_rps_document
from tests.hypothesis_profiles import examples
from tests.unit.test_validation_props import cnpjs, cpfs, ibge_codes

pytestmark = pytest.mark.unit

TODAY = date(2026, 3, 10)
NS = {"n": NFSE_NS}
INF = "n:Rps/n:InfDeclaracaoPrestacaoServico"
# Text fields: (JSON path, XSD limit, XPath of the element the builder writes it to).
TEXTS = {
    "discriminacao": (2000, f"{INF}/n:Servico/n:Discriminacao"),
    "inscricaoMunicipal": (15, f"{INF}/n:Prestador/n:InscricaoMunicipal"),
    "codigoTributacaoMunicipio": (20, f"{INF}/n:Servico/n:CodigoTributacaoMunicipio"),
    "tomador.razaoSocial": (150, f"{INF}/n:TomadorServico/n:RazaoSocial"),
    "tomador.endereco.logradouro": (255, f"{INF}/n:TomadorServico/n:Endereco/n:Endereco"),
    "tomador.endereco.numero": (60, f"{INF}/n:TomadorServico/n:Endereco/n:Numero"),
    "tomador.endereco.complemento": (60, f"{INF}/n:TomadorServico/n:Endereco/n:Complemento"),
    "tomador.endereco.bairro": (60, f"{INF}/n:TomadorServico/n:Endereco/n:Bairro"),
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


def money(low: str, high: str) -> st.SearchStrategy[Any]:
    values = st.decimals(
        min_value=Decimal(low), max_value=Decimal(high), places=2, allow_nan=False
    ) | st.sampled_from([Decimal(low), Decimal(high)])
    return values.flatmap(lambda d: st.sampled_from([d, f"{d:f}", Decimal(f"{d:f}") + 0]))


@st.composite
def enderecos(draw: st.DrawFn) -> dict[str, Any]:
    code = draw(ibge_codes())
    uf = rules.uf_of_ibge(code)
    assert uf is not None
    endereco: dict[str, Any] = {
        "logradouro": draw(texts(255)),
        "numero": draw(texts(60)),
        "bairro": draw(texts(60)),
        "codigoMunicipio": code,
        "uf": draw(st.sampled_from([uf, uf.lower()])),
        "cep": draw(st.from_regex(r"[0-9]{5}-?[0-9]{3}", fullmatch=True)),
    }
    if draw(st.booleans()):
        endereco["complemento"] = draw(texts(60))
    return endereco


@st.composite
def tomadores(draw: st.DrawFn) -> dict[str, Any]:
    tomador: dict[str, Any] = {"cpfCnpj": draw(st.one_of(cpfs(), cnpjs()))}
    # Mostly present: without it the request is the documented XSD exception.
    if draw(st.integers(0, 4)) > 0:
        tomador["razaoSocial"] = draw(texts(150))
    if draw(st.booleans()):
        local = draw(st.from_regex(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,40}", fullmatch=True))
        host = draw(st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){1,2}", fullmatch=True))
        tomador["email"] = f"{local}@{host}"[:80]
    if draw(st.booleans()):
        tomador["endereco"] = draw(enderecos())
    return tomador


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "cnpj": draw(cnpjs()),
        "municipio": draw(ibge_codes()),
        "competencia": draw(st.dates(min_value=date(2000, 1, 1), max_value=TODAY)).isoformat(),
        "total": draw(money("0.01", str(rules.MONEY_MAX))),
        "itemListaServico": draw(st.sampled_from(sorted(LC116_ITEMS))),
        "discriminacao": draw(texts(2000)),
        "aliquota": draw(money("2.00", "5.00")),
        "issRetido": draw(st.booleans()),
    }
    if draw(st.booleans()):
        payload["inscricaoMunicipal"] = draw(texts(15))
    if draw(st.booleans()):
        payload["codigoTributacaoMunicipio"] = draw(texts(20))
    if draw(st.booleans()):
        payload["reference"] = draw(st.from_regex(r"[A-Za-z0-9._:/-]{1,64}", fullmatch=True))
    if draw(st.integers(0, 3)) > 0:
        payload["tomador"] = draw(tomadores())
    return payload


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


def _snake(path: str) -> list[str]:
    return ["".join(f"_{c.lower()}" if c.isupper() else c for c in p) for p in path.split(".")]


def _attribute(request: InvoiceRequest, path: str) -> Any:
    node: Any = request
    for part in _snake(path):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _without_razao_social(request: InvoiceRequest) -> bool:
    return request.tomador is not None and request.tomador.razao_social is None


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), rps_identities, invoice_ids, st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_every_request_the_model_accepts_builds_a_document_the_xsd_accepts(
    payload: dict[str, Any], rps: RpsIdentity, invoice_id: str, emitted_on: date
) -> None:
    try:
        request = parse_invoice_request(payload, today=TODAY)
    except ValidationFailed as exc:  # not the property's business; should be rare
        event(f"model refused: {sorted({d.field for d in exc.details})}")
        return
    document = build_gerar_nfse_envio(request, rps, invoice_id, emitted_on)

    if _without_razao_social(request):
        event("tomador without razaoSocial (the documented exception)")
        with pytest.raises(SchemaInvalid) as caught:
            validate_rps_document(document)
        (detail,) = caught.value.details
        # libxml2 names TomadorServico (nothing follows) or the element found in its place.
        assert detail.field.startswith(TOMADOR_PATH), detail
        assert "RazaoSocial" in detail.message, detail
        return

    event("accepted and XSD-valid")
    validate_rps_document(document)

    # What is stored reads back through the hardened parser to the same document and texts.
    data = to_bytes(document)
    parsed = parse_untrusted(data)
    assert to_bytes(parsed) == data
    validate_rps_document(parsed)
    for path, (limit, xpath) in TEXTS.items():
        value = _attribute(request, path)
        found = parsed.xpath(xpath, namespaces=NS)
        assert isinstance(found, list)
        if value is None:
            assert found == [], path
            continue
        assert 1 <= len(value) <= limit
        assert value == str(_get(payload, path)).strip(rules_blanks()), path
        (element,) = found
        assert isinstance(element, etree._Element)
        assert element.text == value, path


def rules_blanks() -> str:
    """Unicode White_Space, which the model strips (see tests/unit/test_domain_props.py)."""
    return (
        "\t\n\x0b\x0c\r \x85\xa0\u1680"
        + "".join(map(chr, range(0x2000, 0x200B)))
        + ("\u2028\u2029\u202f\u205f\u3000")
    )


@settings(max_examples=examples(200), deadline=None)
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_one_character_over_the_xsd_limit_is_refused_by_the_model(
    path: str, data: st.DataObject
) -> None:
    """The other half of the agreement: the model is not looser than the XSD anywhere."""
    limit, _ = TEXTS[path]
    payload = data.draw(payloads())
    payload.setdefault("tomador", {"cpfCnpj": "52998224725"})
    payload["tomador"].setdefault("razaoSocial", "Maria")
    payload["tomador"].setdefault(
        "endereco",
        {"logradouro": "Rua A", "numero": "1", "bairro": "Centro",
         "codigoMunicipio": "3550308", "uf": "SP", "cep": "01310100"},
    )  # fmt: skip
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
