"""Properties of parse_invoice_request: valid input parses, one corruption is one error."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from brazilnum.cnpj import cnpj_check_digits, format_cnpj
from brazilnum.cpf import cpf_check_digits, format_cpf
from brazilnum.muni import muni_check_digit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfse_core.domain import rules
from nfse_core.domain.errors import ValidationFailed
from nfse_core.domain.lc116 import LC116_ITEMS
from nfse_core.domain.validation import parse_invoice_request
from tests.hypothesis_profiles import examples

pytestmark = pytest.mark.unit

TODAY = date(2026, 3, 10)
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"

# --- generators of valid values -----------------------------------------------------------


@st.composite
def cnpjs(draw: st.DrawFn) -> str:
    base = draw(st.text(alphabet=ALNUM, min_size=12, max_size=12))
    if len(set(base)) == 1:
        base = "1" + base[1:11] + "2"
    first, second = cnpj_check_digits(base)
    cnpj = f"{base}{first}{second}"
    style = draw(st.sampled_from(["plain", "formatted", "lower"]))
    if style == "formatted":
        return str(format_cnpj(cnpj))
    return cnpj.lower() if style == "lower" else cnpj


@st.composite
def cpfs(draw: st.DrawFn) -> str:
    base = draw(st.text(alphabet=DIGITS, min_size=9, max_size=9).filter(lambda s: len(set(s)) > 1))
    first, second = cpf_check_digits(base)
    cpf = f"{base}{first}{second}"
    return str(format_cpf(cpf)) if draw(st.booleans()) else cpf


@st.composite
def ibge_codes(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(sorted(rules.UF_IBGE_CODES.values())))
    middle = draw(st.text(alphabet=DIGITS, min_size=4, max_size=4))
    base = prefix + middle
    return f"{base}{muni_check_digit(base)}"


def texts(max_size: int) -> st.SearchStrategy[str]:
    # Letters, digits and punctuation only: no blanks to strip, nothing XML cannot carry.
    return st.text(
        alphabet=st.characters(categories=("L", "N", "P"), exclude_characters="\ufffe\uffff"),
        min_size=1,
        max_size=max_size,
    )


def cents(low: str = "0.01", high: str = str(rules.MONEY_MAX)) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=Decimal(low),
        max_value=Decimal(high),
        places=2,
        allow_nan=False,
        allow_infinity=False,
    )


def as_client_number(value: Decimal, style: str) -> Any:
    """The forms a number reaches the model in: Decimal (JSON number), numeric string, int."""
    if style == "str":
        return str(value) if "E" not in str(value) else f"{value:f}"
    if style == "int" and value == value.to_integral_value():
        return int(value)
    return value


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
    if draw(st.booleans()):
        tomador["razaoSocial"] = draw(texts(150))
    if draw(st.booleans()):
        user = draw(st.from_regex(r"[a-z0-9._+-]{1,30}", fullmatch=True))
        host = draw(st.from_regex(r"[a-z0-9]{1,20}\.(com|com\.br|org)", fullmatch=True))
        tomador["email"] = f"{user}@{host}"
    if draw(st.booleans()):
        tomador["endereco"] = draw(enderecos())
    return tomador


@st.composite
def requests(draw: st.DrawFn, full: bool = False) -> dict[str, Any]:
    """A valid body; with `full`, every optional field is present (so any can be corrupted)."""
    payload: dict[str, Any] = {
        "cnpj": draw(cnpjs()),
        "municipio": draw(ibge_codes()),
        "competencia": draw(st.dates(min_value=date(2000, 1, 1), max_value=TODAY)).isoformat(),
        "total": as_client_number(draw(cents()), draw(st.sampled_from(["dec", "str", "int"]))),
        "itemListaServico": draw(st.sampled_from(sorted(LC116_ITEMS))),
        "discriminacao": draw(texts(2000)),
        "aliquota": as_client_number(
            draw(cents("2.00", "5.00")), draw(st.sampled_from(["dec", "str"]))
        ),
        "issRetido": draw(st.booleans()),
    }
    if full or draw(st.booleans()):
        payload["inscricaoMunicipal"] = draw(texts(15))
    if full or draw(st.booleans()):
        payload["codigoTributacaoMunicipio"] = draw(texts(20))
    if full or draw(st.booleans()):
        payload["reference"] = draw(st.from_regex(r"[A-Za-z0-9._:/-]{1,64}", fullmatch=True))
    if full or draw(st.booleans()):
        tomador = draw(tomadores())
        if full:
            tomador.setdefault("razaoSocial", "Maria")
            tomador.setdefault("email", "maria@example.com")
            tomador.setdefault(
                "endereco",
                {"logradouro": "Rua A", "numero": "1", "bairro": "Centro",
                 "codigoMunicipio": "3550308", "uf": "SP", "cep": "01310100"},
            )  # fmt: skip
        payload["tomador"] = tomador
    return payload


# --- corruptions: (JSON path, a value that breaks exactly that field) ----------------------

CORRUPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "cnpj": st.sampled_from(["11222333000182", "12ABC34501DE36", "191", "", 11222333000181]),
    "municipio": st.sampled_from(["3550309", "0000000", "355030", 3550308, None]),
    "competencia": st.integers(1, 4000).map(lambda d: (TODAY + timedelta(days=d)).isoformat())
    | st.sampled_from(["2026-02-30", "10/03/2026", 20260310]),
    "total": st.sampled_from([0, "-1", Decimal("0.001"), 1.5, True, "abc", Decimal("NaN"), None])
    | st.decimals(min_value=Decimal("10000000000000"), allow_nan=False, allow_infinity=False),
    "itemListaServico": st.sampled_from(["1.07", "99.99", "0107", "", 107]),
    "discriminacao": st.sampled_from(["", "   ", "x" * 2001, "a\x07b", None]),
    "aliquota": st.sampled_from(["1.99", "5.01", "2.001", 0, False, 2.5, "x"]),
    "issRetido": st.sampled_from(["true", "false", 1, 0, None, "sim"]),
    "inscricaoMunicipal": st.sampled_from(["", "x" * 16, 123]),
    "codigoTributacaoMunicipio": st.sampled_from(["", "x" * 21, 10701]),
    "reference": st.sampled_from(["", "with space", "x" * 65, "a#b", 7]),
    "tomador": st.sampled_from(["Maria", [], 1]),
    "tomador.cpfCnpj": st.sampled_from(["52998224724", "11111111111", "1234", "11444777000162"]),
    "tomador.razaoSocial": st.sampled_from(["", "x" * 151, "a\x00"]),
    "tomador.email": st.sampled_from(["maria", "maria@localhost", "a b@c.com", "x" * 81]),
    "tomador.endereco": st.sampled_from(["Rua A", []]),
    "tomador.endereco.logradouro": st.sampled_from(["", "x" * 256]),
    "tomador.endereco.numero": st.sampled_from(["", "x" * 61]),
    "tomador.endereco.complemento": st.sampled_from(["", "x" * 61]),
    "tomador.endereco.bairro": st.sampled_from(["", "x" * 61]),
    "tomador.endereco.codigoMunicipio": st.sampled_from(["3550309", "123", 3550308]),
    "tomador.endereco.uf": st.sampled_from(["XX", "", "S", "São"]),
    "tomador.endereco.cep": st.sampled_from(["1310-100", "013101000", "0131010A", 1310100]),
}
REQUIRED = [
    "cnpj", "municipio", "competencia", "total", "itemListaServico", "discriminacao",
    "aliquota", "issRetido", "tomador.cpfCnpj", "tomador.endereco.logradouro",
    "tomador.endereco.numero", "tomador.endereco.bairro", "tomador.endereco.codigoMunicipio",
    "tomador.endereco.uf", "tomador.endereco.cep",
]  # fmt: skip


def _parent(payload: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, leaf = path.split(".")
    node = payload
    for part in parents:
        node = node[part]
    return node, leaf


def _details(payload: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(payload, today=TODAY)
    return [(d.field, d.message) for d in caught.value.details]


# --- properties ---------------------------------------------------------------------------

# Building the Unicode category tables for texts() takes a second the first time it runs.
_SLOW_OK = [HealthCheck.too_slow]


@settings(max_examples=examples(200), suppress_health_check=_SLOW_OK)
@given(requests())
def test_valid_requests_always_parse(payload: dict[str, Any]) -> None:
    request = parse_invoice_request(payload, today=TODAY)
    assert rules.is_valid_cnpj(request.cnpj)
    assert request.cnpj == rules.normalize_cnpj(payload["cnpj"])
    assert request.competencia <= TODAY
    assert request.total > 0
    assert rules.decimal_places(request.total) <= 2


@settings(max_examples=examples(300), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_one_corrupted_field_is_reported_with_exactly_its_path(data: st.DataObject) -> None:
    payload = data.draw(requests(full=True))
    path = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    node, leaf = _parent(payload, path)
    node[leaf] = data.draw(CORRUPTIONS[path])
    details = _details(payload)
    assert [field for field, _ in details] == [path], details
    assert details[0][1]


@settings(max_examples=examples(100), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_one_missing_required_field_is_reported_as_required(data: st.DataObject) -> None:
    payload = data.draw(requests(full=True))
    path = data.draw(st.sampled_from(REQUIRED))
    node, leaf = _parent(payload, path)
    del node[leaf]
    assert _details(payload) == [(path, "is required")]


@settings(max_examples=examples(100), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_an_unknown_field_is_reported_at_its_path(data: st.DataObject) -> None:
    payload = data.draw(requests(full=True))
    where = data.draw(st.sampled_from(["", "tomador", "tomador.endereco"]))
    name = data.draw(st.from_regex(r"[a-z][A-Za-z]{0,15}", fullmatch=True))
    node = payload
    for part in filter(None, where.split(".")):
        node = node[part]
    if name in node:
        return
    node[name] = "x"
    path = f"{where}.{name}" if where else name
    assert _details(payload) == [(path, "is not a known field")]


@settings(max_examples=examples(50), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_all_corruptions_at_once_are_all_reported(data: st.DataObject) -> None:
    payload = data.draw(requests(full=True))
    chosen = data.draw(
        st.sets(
            st.sampled_from(
                sorted(p for p in CORRUPTIONS if p not in ("tomador", "tomador.endereco"))
            ),
            min_size=1,
        )
    )
    for path in chosen:
        node, leaf = _parent(payload, path)
        node[leaf] = data.draw(CORRUPTIONS[path])
    fields = [field for field, _ in _details(payload)]
    assert sorted(fields) == sorted(chosen)


@given(cents(), st.sampled_from(["dec", "str", "int"]))
def test_money_round_trips_exactly(value: Decimal, style: str) -> None:
    payload = copy.deepcopy(_BASE)
    payload["total"] = as_client_number(value, style)
    request = parse_invoice_request(payload, today=TODAY)
    assert request.total == value
    assert isinstance(request.total, Decimal)
    assert str(request.total) == f"{value:.2f}"
    assert Decimal(str(request.total)) == value


@given(cents(), st.integers(min_value=0, max_value=5))
def test_trailing_zeros_do_not_count_as_decimals(value: Decimal, zeros: int) -> None:
    payload = copy.deepcopy(_BASE)
    payload["total"] = f"{value:.2f}" + "0" * zeros
    assert parse_invoice_request(payload, today=TODAY).total == value


@given(st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3))
def test_a_third_decimal_is_rejected(value: Decimal) -> None:
    payload = copy.deepcopy(_BASE)
    payload["total"] = value
    if value == value.quantize(rules.CENT):
        assert parse_invoice_request(payload, today=TODAY).total == value
    else:
        assert _details(payload) == [("total", "must have at most 2 decimal places")]


_BASE: dict[str, Any] = {
    "cnpj": "11222333000181",
    "municipio": "3550308",
    "competencia": "2026-03-01",
    "total": Decimal("1.00"),
    "itemListaServico": "01.07",
    "discriminacao": "Consultoria",
    "aliquota": Decimal("5.00"),
    "issRetido": True,
}
