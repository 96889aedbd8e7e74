"""Properties of parse_invoice_request: valid input parses, one corruption is one error.

Valid bodies come from tests/strategies_request.py (every field of issue 13, consistent with
the cross-field rules). A field corruption breaks one field's own rule; a cross-field
corruption breaks one rule over several fields; either is reported at exactly its path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfse_core.domain import rules
from nfse_core.domain.errors import ValidationFailed
from nfse_core.domain.validation import parse_invoice_request
from tests.hypothesis_profiles import examples
from tests.strategies_request import (
    EXPORT,
    ISS_DUE,
    ITEMS_WITHOUT_FLOOR,
    RETENCOES,
    TODAY,
    as_client_number,
    cents,
    request_bodies,
)

pytestmark = pytest.mark.unit


def requests(full: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return request_bodies(full=full)


# --- corruptions: (JSON path, a value that breaks exactly that field) ----------------------

_AMOUNT = st.sampled_from(["-0.01", Decimal("0.001"), 1.5, True, "abc", Decimal("NaN"), None])
_CODE = st.sampled_from(["0", "77", 1])
CORRUPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "cnpj": st.sampled_from(
        ["11222333000182", "12ABC34501DE36", "191", "", 11222333000181, "11 222 333 0001 81"]
    ),
    "municipio": st.sampled_from(["3550309", "0000000", "355030", "3500006", 3550308, None]),
    "competencia": st.integers(1, 4000).map(lambda d: (TODAY + timedelta(days=d)).isoformat())
    | st.sampled_from(["2026-02-30", "10/03/2026", 20260310, "2003-07-31", "2000-01-01"]),
    "total": st.sampled_from([0, "-1", Decimal("0.001"), 1.5, True, "abc", Decimal("NaN"), None])
    | st.decimals(min_value=Decimal("10000000000000"), allow_nan=False, allow_infinity=False),
    "itemListaServico": st.sampled_from(["1.07", "99.99", "0107", "", 107, "03.01"]),
    "discriminacao": st.sampled_from(["", "   ", "x" * 2001, "a\x07b", None]),
    # Only what the rate's own rule refuses (0-5, cents); the item's floor is cross-field.
    "aliquota": st.sampled_from(["5.01", "2.001", "-1", False, 2.5, "x"]),
    "issRetido": st.sampled_from(["true", "false", 1, 0, None, "sim"]),
    "exigibilidadeIss": st.sampled_from([0, 8, "1", True, 1.0, None]),
    "numeroProcesso": st.sampled_from(["", "x" * 31, 123, "a\x00"]),
    "codigoPais": st.sampled_from(["1058", "123", "12345", "AB12", 2496]),
    "municipioIncidencia": st.sampled_from(["3550309", "5300009", "123", 3550308]),
    "valorDeducoes": _AMOUNT,
    "descontoIncondicionado": _AMOUNT,
    "descontoCondicionado": _AMOUNT,
    "retencoes": st.sampled_from(["x", [], 1]),
    **{f"retencoes.{name}": _AMOUNT for name in RETENCOES},
    "responsavelRetencao": st.sampled_from(["prestador", "", 1, "Tomador"]),
    "optanteSimplesNacional": st.sampled_from(["true", 1, 0, None, "sim"]),
    "regimeEspecialTributacao": st.sampled_from([0, 7, "1", True, 1.5]),
    "incentivoFiscal": st.sampled_from(["true", 1, 0, None, "sim"]),
    "codigoCnae": st.sampled_from(["123456", "12345678", "ABCDEFG", "6201 501", 6201501]),
    "codigoNbs": st.sampled_from(["12345678", "1234567890", "abcdefghi", 115062100]),
    "codigoTributacaoNacional": st.sampled_from(["01070", "0107011", "abcdef", 10701]),
    "inscricaoMunicipal": st.sampled_from(["", "x" * 16, 123]),
    "codigoTributacaoMunicipio": st.sampled_from(["", "x" * 21, 10701]),
    "reference": st.sampled_from(["", "with space", "x" * 65, "a#b", 7]),
    "tomador": st.sampled_from(["Maria", [], 1]),
    "tomador.cpfCnpj": st.sampled_from(
        ["52998224724", "11111111111", "1234", "11444777000162", "111444 77735"]
    ),
    "tomador.nif": st.sampled_from(["", "x" * 41, "a\x00", 5]),
    "tomador.razaoSocial": st.sampled_from(["", "x" * 151, "a\x00"]),
    "tomador.email": st.sampled_from(["maria", "maria@localhost", "a b@c.com", "x" * 81]),
    "tomador.endereco": st.sampled_from(["Rua A", []]),
    "tomador.endereco.logradouro": st.sampled_from(["", "x" * 256]),
    "tomador.endereco.numero": st.sampled_from(["", "x" * 61]),
    "tomador.endereco.complemento": st.sampled_from(["", "x" * 61]),
    "tomador.endereco.bairro": st.sampled_from(["", "x" * 61]),
    "tomador.endereco.codigoMunicipio": st.sampled_from(["3550309", "123", 3550308, "5300009"]),
    "tomador.endereco.uf": st.sampled_from(["XX", "", "S", "São"]),
    "tomador.endereco.cep": st.sampled_from(
        ["1310-100", "013101000", "0131010A", 1310100, "01310 100"]
    ),
    "tomador.enderecoExterior": st.sampled_from(["Rua A", []]),
    "tomador.enderecoExterior.codigoPais": st.sampled_from(["1058", "12", "ABCD", 2496]),
    "tomador.enderecoExterior.enderecoCompleto": st.sampled_from(["", "x" * 256, "a\x00"]),
    "intermediario": st.sampled_from(["Maria", [], 1]),
    "intermediario.cpfCnpj": st.sampled_from(["52998224724", "1234", "111.444.777 35"]),
    "intermediario.razaoSocial": st.sampled_from(["", "x" * 151, "a\x00"]),
    "intermediario.codigoMunicipio": st.sampled_from(["3550309", "5300009", "123"]),
}
# Containers: replacing one hides the corruptions of what it holds.
CONTAINERS = frozenset(
    {"tomador", "tomador.endereco", "tomador.enderecoExterior", "intermediario", "retencoes"}
)
# Fields whose absence is reported as "is required" by the field itself (aliquota, numeroProcesso,
# codigoPais and tomador.cpfCnpj are required only with other fields: CROSS_FIELD below).
REQUIRED = [
    "cnpj", "municipio", "competencia", "total", "itemListaServico", "discriminacao",
    "issRetido", "tomador.endereco.logradouro", "tomador.endereco.numero",
    "tomador.endereco.bairro", "tomador.endereco.codigoMunicipio", "tomador.endereco.uf",
    "tomador.endereco.cep", "tomador.enderecoExterior.codigoPais",
    "tomador.enderecoExterior.enderecoCompleto", "intermediario.cpfCnpj",
    "intermediario.razaoSocial", "intermediario.codigoMunicipio",
]  # fmt: skip


def _has(payload: dict[str, Any], path: str) -> bool:
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


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


# --- cross-field corruptions: each breaks one rule over several fields ----------------------
# Each takes a valid body (mode full) and returns the one path it must be reported at, or None
# when the body does not lend itself to it.


def _exigibilidade(payload: dict[str, Any]) -> int:
    return int(payload.get("exigibilidadeIss", 1))


def _drop_numero_processo(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) not in (6, 7):
        return None
    del payload["numeroProcesso"]
    return "numeroProcesso"


def _drop_aliquota(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) not in ISS_DUE:
        return None
    del payload["aliquota"]
    return "aliquota"


def _aliquota_below_floor(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) not in ISS_DUE or payload["itemListaServico"] in ITEMS_WITHOUT_FLOOR:
        return None
    payload["aliquota"] = "1.99"
    # A lower rate withholds less ISS: the net value can only grow.
    return "aliquota"


def _retido_without_iss(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) != EXPORT:
        return None
    payload["issRetido"] = True
    return "issRetido"


def _responsavel_without_retencao(payload: dict[str, Any]) -> str | None:
    if "responsavelRetencao" not in payload:
        return None
    payload["issRetido"] = False  # no ISS withheld: the net value grows
    return "responsavelRetencao"


def _responsavel_without_intermediario(payload: dict[str, Any]) -> str | None:
    if not payload["issRetido"]:
        return None
    payload["responsavelRetencao"] = "intermediario"
    payload.pop("intermediario", None)
    return "intermediario"


def _pais_outside_export(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) == EXPORT:
        return None
    payload["codigoPais"] = "2496"
    return "codigoPais"


def _export_without_pais(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) != EXPORT:
        return None
    del payload["codigoPais"]
    return "codigoPais"


def _export_with_incidencia(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) != EXPORT:
        return None
    payload["municipioIncidencia"] = "3550308"
    return "municipioIncidencia"


def _processo_outside_suspension(payload: dict[str, Any]) -> str | None:
    if _exigibilidade(payload) != EXPORT:
        return None
    payload["numeroProcesso"] = "123"
    return "numeroProcesso"


def _tribnac_of_another_item(payload: dict[str, Any]) -> str | None:
    item = payload["itemListaServico"].replace(".", "")
    other = "0101" if item != "0101" else "0102"
    payload["codigoTributacaoNacional"] = other + "01"
    return "codigoTributacaoNacional"


def _tomador_without_identity(payload: dict[str, Any]) -> str | None:
    payload["tomador"].pop("cpfCnpj", None)
    payload["tomador"].pop("nif", None)
    return "tomador.cpfCnpj"


def _tomador_with_both_addresses(payload: dict[str, Any]) -> str | None:
    tomador = payload["tomador"]
    tomador.setdefault("endereco", copy.deepcopy(_ENDERECO))
    tomador.setdefault("enderecoExterior", {"codigoPais": "2496", "enderecoCompleto": "1 Main"})
    return "tomador.enderecoExterior"


def _deducoes_above_total(payload: dict[str, Any]) -> str | None:
    total = Decimal(str(payload["total"]))
    payload["valorDeducoes"] = total + Decimal("0.01")
    return "valorDeducoes"


CROSS_FIELD: list[Callable[[dict[str, Any]], str | None]] = [
    _drop_numero_processo,
    _drop_aliquota,
    _aliquota_below_floor,
    _retido_without_iss,
    _responsavel_without_retencao,
    _responsavel_without_intermediario,
    _pais_outside_export,
    _export_without_pais,
    _export_with_incidencia,
    _processo_outside_suspension,
    _tribnac_of_another_item,
    _tomador_without_identity,
    _tomador_with_both_addresses,
    _deducoes_above_total,
]
_ENDERECO = {
    "logradouro": "Rua A", "numero": "1", "bairro": "Centro", "codigoMunicipio": "3550308",
    "uf": "SP", "cep": "01310100",
}  # fmt: skip


def _amount(payload: dict[str, Any], path: str) -> Decimal:
    node: Any = payload
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return Decimal(0)
        node = node[part]
    return Decimal(str(node))


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
    assert request.exigibilidade_iss == payload.get("exigibilidadeIss", 1)
    for name in ("valorDeducoes", "descontoIncondicionado", "descontoCondicionado"):
        assert getattr(request, _snake(name)) == _amount(payload, name)
    for name in RETENCOES:
        assert getattr(request.retencoes, name) == _amount(payload, f"retencoes.{name}")


@settings(max_examples=examples(200), suppress_health_check=_SLOW_OK)
@given(requests())
def test_base_and_net_value_follow_the_formulas_and_are_never_negative(
    payload: dict[str, Any],
) -> None:
    """ABRASF 2.04: base = ValorServicos - ValorDeducoes - DescontoIncondicionado; ValorLiquido =
    ValorServicos - retentions - ISS withheld - both discounts."""
    valores = parse_invoice_request(payload, today=TODAY).valores
    total = _amount(payload, "total")
    incondicionado = _amount(payload, "descontoIncondicionado")
    base = total - _amount(payload, "valorDeducoes") - incondicionado
    assert valores.base_calculo == base >= 0
    due = _exigibilidade(payload) in ISS_DUE
    if due:
        exact = base * _amount(payload, "aliquota") / 100
        assert valores.valor_iss is not None
        assert abs(valores.valor_iss - exact) <= Decimal("0.005")
    else:
        assert valores.valor_iss is None
    withheld = valores.valor_iss if payload["issRetido"] and valores.valor_iss else 0
    retained = sum((_amount(payload, f"retencoes.{name}") for name in RETENCOES), Decimal(0))
    net = total - retained - withheld - incondicionado - _amount(payload, "descontoCondicionado")
    assert valores.valor_liquido == net >= 0


@settings(max_examples=examples(200), suppress_health_check=_SLOW_OK)
@given(requests(), cents("0.01", "10000.00"), st.integers(0, 100))
def test_deductions_and_discount_above_the_total_are_refused_naming_one_of_them(
    payload: dict[str, Any], excess: Decimal, share: int
) -> None:
    total = _amount(payload, "total")
    over = total + excess
    deducoes = (over * share / 100).quantize(rules.CENT)
    payload["valorDeducoes"] = as_client_number(deducoes, "str")
    payload["descontoIncondicionado"] = as_client_number(over - deducoes, "str")
    fields = {field for field, _ in _details(payload)}
    assert fields & {"valorDeducoes", "descontoIncondicionado"}, fields


@settings(max_examples=examples(300), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_one_corrupted_field_is_reported_with_exactly_its_path(data: st.DataObject) -> None:
    payload = data.draw(requests(full=True))
    path = data.draw(st.sampled_from(sorted(p for p in CORRUPTIONS if _has(payload, p))))
    node, leaf = _parent(payload, path)
    node[leaf] = data.draw(CORRUPTIONS[path])
    details = _details(payload)
    assert [field for field, _ in details] == [path], details
    assert details[0][1]


@settings(max_examples=examples(200), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_one_broken_cross_field_rule_is_reported_with_exactly_its_path(
    data: st.DataObject,
) -> None:
    payload = data.draw(requests(full=True))
    corrupt = data.draw(st.sampled_from(CROSS_FIELD))
    path = corrupt(payload)
    if path is None:
        return
    details = _details(payload)
    assert [field for field, _ in details] == [path], (corrupt.__name__, details)
    assert details[0][1]


@settings(max_examples=examples(100), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_one_missing_required_field_is_reported_as_required(data: st.DataObject) -> None:
    payload = data.draw(requests(full=True))
    path = data.draw(st.sampled_from([p for p in REQUIRED if _has(payload, p)]))
    node, leaf = _parent(payload, path)
    del node[leaf]
    assert _details(payload) == [(path, "is required")]


@settings(max_examples=examples(100), suppress_health_check=_SLOW_OK)
@given(st.data())
def test_an_unknown_field_is_reported_at_its_path(data: st.DataObject) -> None:
    payload = data.draw(requests(full=True))
    where = data.draw(
        st.sampled_from([p for p in ["", *sorted(CONTAINERS)] if not p or _has(payload, p)])
    )
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
                sorted(p for p in CORRUPTIONS if p not in CONTAINERS and _has(payload, p))
            ),
            min_size=1,
        )
    )
    for path in chosen:
        node, leaf = _parent(payload, path)
        node[leaf] = data.draw(CORRUPTIONS[path])
    fields = [field for field, _ in _details(payload)]
    assert sorted(fields) == sorted(chosen)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


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
