"""Properties of the fiscal rules against independent oracles written here from the specs.

CNPJ/CPF (Receita Federal mod-11, alphanumeric CNPJ of July 2026), IBGE codes (exactly the
municipalities of the IBGE list, whose check digits all agree with the rule but for nine known
exceptions), aliquota and money boundaries for any Decimal and any JSON number form, the rate
range of each item (LC 116 art. 8-A), competencia against the date of any instant in the
municipality's own zone and its lower bound, and free-text lengths (what is stripped, what
counts).

A finding kept as a test: "any single-character change breaks a CNPJ/CPF" is false. The
mod-11 scheme maps remainders 0 and 1 to the same check digit 0, so some one-digit changes
keep both check digits (about 1 in 100 valid numbers has such a neighbour); in an
alphanumeric CNPJ, characters whose values differ by 11 (A=17 and L=28, 0 and B...) weigh the
same modulo 11; and a CPF's first digit weighs 11 for the second check digit, so it only
moves the first one. What does hold: a change to a check digit is always caught, and a change in
the base is accepted exactly when the oracle's check digits agree.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from nfse_core.domain import places as municipalities
from nfse_core.domain import rules
from nfse_core.domain.errors import ValidationFailed
from nfse_core.domain.lc116 import LC116_ITEMS
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.validation import parse_invoice_request
from tests.hypothesis_profiles import examples
from tests.strategies_request import ITEMS_WITHOUT_FLOOR, cnpjs, cpfs, ibge_codes

pytestmark = pytest.mark.unit

TODAY = date(2026, 3, 10)
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"
SAO_PAULO_SINCE_2019 = timezone(timedelta(hours=-3))  # no daylight saving since 2019
# What pydantic's str_strip_whitespace removes: Unicode White_Space (not Python's isspace,
# which adds U+001C..U+001F; those are controls the model refuses anyway).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)


# --- oracles, from the published algorithms (not from brazilnum) --------------------------


def _mod11_digit(values: list[int], weights: list[int]) -> int:
    remainder = sum(v * w for v, w in zip(values, weights, strict=True)) % 11
    return 0 if remainder < 2 else 11 - remainder


def _remainder(values: list[int], weights: list[int]) -> int:
    return sum(v * w for v, w in zip(values, weights, strict=True)) % 11


CNPJ_W1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
CNPJ_W2 = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]


def cnpj_value(char: str) -> int:
    """The alphanumeric CNPJ's character value: ASCII code minus 48 (digits keep theirs)."""
    return ord(char) - 48


def oracle_cnpj_digits(base: str) -> str:
    values = [cnpj_value(c) for c in base]
    first = _mod11_digit(values, CNPJ_W1)
    second = _mod11_digit([*values, first], CNPJ_W2)
    return f"{first}{second}"


def oracle_is_cnpj(text: str) -> bool:
    return (
        len(text) == 14
        and all(c in ALNUM for c in text[:12])
        and all(c in DIGITS for c in text[12:])
        and len(set(text)) > 1
        and oracle_cnpj_digits(text[:12]) == text[12:]
    )


CPF_W1 = list(range(10, 1, -1))
CPF_W2 = list(range(11, 1, -1))


def oracle_cpf_digits(base: str) -> str:
    values = [int(c) for c in base]
    first = _mod11_digit(values, CPF_W1)
    second = _mod11_digit([*values, first], CPF_W2)
    return f"{first}{second}"


def oracle_is_cpf(text: str) -> bool:
    return (
        len(text) == 11
        and all(c in DIGITS for c in text)
        and len(set(text)) > 1
        and oracle_cpf_digits(text[:9]) == text[9:]
    )


IBGE_UNCHECKED = frozenset(  # IBGE codes issued with a check digit that does not compute
    {"2201919", "2201988", "2202251", "2611533", "3117836", "3152131", "4305871", "5203939",
     "5203962"}
)  # fmt: skip


def oracle_ibge_digit(base: str) -> int:
    total = 0
    for index, char in enumerate(base):
        product = int(char) * (1 if index % 2 == 0 else 2)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def oracle_is_ibge(code: str) -> bool:
    if len(code) != 7 or not code.isdigit() or code[:2] not in rules.UF_IBGE_CODES.values():
        return False
    return code in IBGE_UNCHECKED or oracle_ibge_digit(code[:6]) == int(code[6])


def places(value: Decimal) -> int:
    """Decimal places without trailing zeros, exact for any exponent."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).rstrip("0")
    if exponent >= 0 or not significant:
        return 0
    return max(-exponent - (len(digits) - len(significant)), 0)


# --- CNPJ / CPF ---------------------------------------------------------------------------


def plain_cnpjs() -> st.SearchStrategy[str]:
    return cnpjs().map(rules.normalize_cnpj)


def plain_cpfs() -> st.SearchStrategy[str]:
    return cpfs().map(rules.normalize_cpf)


@settings(max_examples=examples(300))
@given(cnpjs())
def test_any_generated_cnpj_normalizes_and_validates(cnpj: str) -> None:
    plain = rules.normalize_cnpj(cnpj)
    assert oracle_is_cnpj(plain)
    assert rules.cnpj_problem(cnpj) is None
    assert rules.normalize_cnpj(plain) == plain  # idempotent
    assert rules.cpf_or_cnpj_problem(cnpj) is None
    assert rules.normalize_cpf_or_cnpj(cnpj) == plain


@settings(max_examples=examples(300))
@given(cpfs())
def test_any_generated_cpf_normalizes_and_validates(cpf: str) -> None:
    plain = rules.normalize_cpf(cpf)
    assert oracle_is_cpf(plain)
    assert rules.cpf_problem(cpf) is None
    assert rules.cpf_or_cnpj_problem(cpf) is None
    assert rules.normalize_cpf_or_cnpj(cpf) == plain


@settings(max_examples=examples(300))
@given(plain_cnpjs(), st.integers(12, 13), st.sampled_from(DIGITS))
def test_a_changed_cnpj_check_digit_is_always_caught(cnpj: str, index: int, digit: str) -> None:
    assume(cnpj[index] != digit)
    changed = cnpj[:index] + digit + cnpj[index + 1 :]
    assert rules.cnpj_problem(changed) == "CNPJ check digits do not match"


@settings(max_examples=examples(300))
@given(plain_cpfs(), st.integers(9, 10), st.sampled_from(DIGITS))
def test_a_changed_cpf_check_digit_is_always_caught(cpf: str, index: int, digit: str) -> None:
    assume(cpf[index] != digit)
    changed = cpf[:index] + digit + cpf[index + 1 :]
    assert rules.cpf_problem(changed) == "CPF check digits do not match"


@settings(max_examples=examples(500))
@given(plain_cnpjs(), st.integers(0, 11), st.sampled_from(ALNUM))
@example("71046563414800", 0, "5")  # numeric: remainders 1 -> 0 and 0 -> 1, digits stay 0 0
@example("3RWO65K0SY1E40", 0, "I")  # alphanumeric: '3' = 3 and 'I' = 25 differ by 22
def test_a_changed_cnpj_base_character_is_caught_unless_mod_11_cannot_see_it(
    cnpj: str, index: int, char: str
) -> None:
    assume(cnpj[index] != char)
    changed = cnpj[:index] + char + cnpj[index + 1 :]
    accepted = rules.cnpj_problem(changed) is None
    assert accepted == oracle_is_cnpj(changed)
    if accepted:
        # Only two ways a one-character change survives: the weighted sums move by a
        # multiple of 11, or the remainders move between 0 and 1 (both give digit 0).
        delta = cnpj_value(char) - cnpj_value(cnpj[index])
        old = [cnpj_value(c) for c in cnpj[:13]]
        new = [cnpj_value(c) for c in changed[:13]]
        if delta % 11 == 0:  # the weighted sums move by a multiple of 11: mod 11 is blind
            return
        # Otherwise both remainders moved, each between 0 and 1 (both give check digit 0).
        assert {_remainder(old[:12], CNPJ_W1), _remainder(new[:12], CNPJ_W1)} == {0, 1}
        assert {_remainder(old, CNPJ_W2), _remainder(new, CNPJ_W2)} == {0, 1}
        assert cnpj[12:] == "00", (cnpj, changed)


@settings(max_examples=examples(500))
@given(plain_cpfs(), st.integers(0, 8), st.sampled_from(DIGITS))
@example("65687262300", 0, "5")
@example("14310718701", 0, "0")  # position 0 weighs 11 for the second digit: invisible
def test_a_changed_cpf_digit_is_caught_unless_both_remainders_collapse(
    cpf: str, index: int, digit: str
) -> None:
    assume(cpf[index] != digit)
    changed = cpf[:index] + digit + cpf[index + 1 :]
    accepted = rules.cpf_problem(changed) is None
    assert accepted == oracle_is_cpf(changed)
    if accepted:
        # The first check digit's remainder moved between 0 and 1 (both give 0); the second
        # one did too, or did not move at all: the first position weighs 11 for it, 0 mod 11.
        old, new = [int(c) for c in cpf[:10]], [int(c) for c in changed[:10]]
        assert {_remainder(old[:9], CPF_W1), _remainder(new[:9], CPF_W1)} == {0, 1}
        second = {_remainder(old, CPF_W2), _remainder(new, CPF_W2)}
        assert second == {0, 1} or (index == 0 and len(second) == 1), (cpf, changed)
        assert cpf[9] == "0"


def test_single_digit_changes_that_keep_a_valid_number_exist() -> None:
    """The documented limit of mod 11, pinned so nobody writes the stronger property again."""
    assert rules.is_valid_cnpj("71046563414800") and rules.is_valid_cnpj("51046563414800")
    assert rules.is_valid_cpf("65687262300") and rules.is_valid_cpf("55687262300")
    assert rules.is_valid_cpf("14310718701") and rules.is_valid_cpf("04310718701")
    assert rules.is_valid_cnpj("3RWO65K0SY1E40") and rules.is_valid_cnpj("IRWO65K0SY1E40")


@settings(max_examples=examples(500))
@given(st.text(alphabet=st.sampled_from(ALNUM + "abcz./- \t_ıſﬀ+"), min_size=0, max_size=20))
def test_whatever_text_the_cnpj_rule_accepts_is_a_real_cnpj(text: str) -> None:
    if rules.cnpj_problem(text) is None:
        assert oracle_is_cnpj(rules.normalize_cnpj(text)), text
    if rules.cpf_problem(text) is None:
        assert oracle_is_cpf(rules.normalize_cpf(text)), text


@settings(max_examples=examples(300))
@given(st.text(alphabet=DIGITS, min_size=14, max_size=14))
def test_cnpj_rule_agrees_with_the_oracle_on_any_14_digits(text: str) -> None:
    assert (rules.cnpj_problem(text) is None) == oracle_is_cnpj(text)


@settings(max_examples=examples(300))
@given(st.text(alphabet=DIGITS, min_size=11, max_size=11))
def test_cpf_rule_agrees_with_the_oracle_on_any_11_digits(text: str) -> None:
    assert (rules.cpf_problem(text) is None) == oracle_is_cpf(text)


# --- IBGE ---------------------------------------------------------------------------------


def _municipalities() -> frozenset[str]:
    return municipalities.municipality_codes()


@settings(max_examples=examples(300))
@given(ibge_codes())
def test_any_generated_ibge_code_validates_and_names_its_uf(code: str) -> None:
    assert rules.ibge_problem(code) is None
    uf = rules.uf_of_ibge(code)
    assert uf is not None and rules.UF_IBGE_CODES[uf] == code[:2]
    known = municipalities.municipality(code)
    assert known is not None and known.uf == uf


@settings(max_examples=examples(500))
@given(ibge_codes(), st.integers(2, 6), st.sampled_from(DIGITS))
def test_a_changed_ibge_digit_is_caught_unless_the_code_is_a_known_exception(
    code: str, index: int, digit: str
) -> None:
    # The IBGE digit is a Luhn-like mod 10 with weights 1,2: it catches every single change, so
    # two municipalities one digit apart need one of the nine codes whose digit is off.
    assume(code[index] != digit)
    changed = code[:index] + digit + code[index + 1 :]
    accepted = rules.ibge_problem(changed) is None
    assert accepted == (changed in _municipalities())
    if accepted:
        assert code in IBGE_UNCHECKED or changed in IBGE_UNCHECKED, (code, changed)


@settings(max_examples=examples(500))
@given(
    st.text(alphabet=DIGITS, min_size=7, max_size=7)
    | st.builds(lambda code, digit: code[:6] + digit, ibge_codes(), st.sampled_from(DIGITS))
)
@example("3500006")  # a valid check digit, no municipality (issue 13)
@example("5300009")
@example("5101837")  # Boa Esperança do Norte, MT, installed in 2025
def test_ibge_rule_accepts_exactly_the_municipalities_of_the_list(code: str) -> None:
    accepted = rules.ibge_problem(code) is None
    assert accepted == (code in _municipalities()), code
    if accepted:
        assert oracle_is_ibge(code)


def test_every_municipality_of_the_list_passes_and_its_check_digit_agrees() -> None:
    codes = _municipalities()
    assert len(codes) == 5571
    assert {code for code in codes if not oracle_is_ibge(code)} == set()
    assert {code for code in codes if rules.ibge_problem(code) is not None} == set()
    # The nine exceptions are real municipalities; every other code's digit computes.
    assert codes >= IBGE_UNCHECKED
    assert all(oracle_ibge_digit(c[:6]) == int(c[6]) for c in codes - IBGE_UNCHECKED)


@pytest.mark.parametrize("code", sorted(IBGE_UNCHECKED))
def test_the_nine_ibge_codes_with_a_wrong_check_digit_are_accepted(code: str) -> None:
    assert oracle_ibge_digit(code[:6]) != int(code[6])
    assert rules.ibge_problem(code) is None


# --- aliquota and money: any Decimal, any JSON number form ---------------------------------


def decimals_any_exponent() -> st.SearchStrategy[Decimal]:
    """Finite Decimals with up to 30 digits and exponents far beyond both limits."""
    return st.builds(
        lambda sign, digits, exponent: Decimal((sign, tuple(digits), exponent)),
        st.sampled_from([0, 1]),
        st.lists(st.integers(0, 9), min_size=1, max_size=30),
        st.integers(-40, 20),
    )


def near(value: str) -> st.SearchStrategy[Decimal]:
    """Values at and around a boundary, written with any number of trailing zeros."""
    center = Decimal(value)
    return st.builds(
        lambda step, exponent, zeros: (
            Decimal(f"{center + step * Decimal(10) ** exponent:f}") + Decimal("0E-" + str(zeros))
        ),
        st.integers(-2, 2),
        st.integers(-6, -1),
        st.integers(0, 6),
    )


@settings(max_examples=examples(500))
@given(st.one_of(decimals_any_exponent(), near("0.00"), near("2.00"), near("5.00")))
@example(Decimal("0.0000"))  # zero with trailing zeros is zero (rules.decimal_places says 3)
def test_aliquota_rule_accepts_exactly_0_to_5_with_cents(value: Decimal) -> None:
    """The rate's own rule (LC 116 art. 8, II: at most 5%); the 2% floor depends on the item."""
    expected = places(value) <= 2 and Decimal(0) <= value <= Decimal(5)
    assert (rules.aliquota_problem(value) is None) == expected, value
    if expected:
        assert rules.to_cents(value) == value


@settings(max_examples=examples(500))
@given(
    st.sampled_from(sorted(LC116_ITEMS)),
    st.sampled_from([1, 2, 3, 5, 6, 7]),
    st.one_of(near("0.00"), near("2.00"), near("5.00"), decimals_any_exponent()),
)
@example("07.02", 1, Decimal("1.00"))  # art. 8-A §1: no floor for 7.02, 7.05, 16.01
@example("01.07", 1, Decimal("1.99"))
@example("01.07", 3, Decimal("1.00"))  # exempt: no rate applies, any rate sent is ignored
@example("07.02", 1, Decimal("0.0000"))  # 0%, written with four decimals
def test_aliquota_is_accepted_in_the_range_of_its_item_when_iss_is_due(
    item: str, exigibilidade: int, value: Decimal
) -> None:
    """LC 116 art. 8-A: 2-5% when ISS is due, 0-5% for 7.02/7.05/16.01; no range applies when
    none is due (2, 3, 5; 4 needs codigoPais and is left out here)."""
    due = exigibilidade in (1, 6, 7)
    low = Decimal(0) if item in ITEMS_WITHOUT_FLOOR or not due else Decimal(2)
    expected = places(value) <= 2 and low <= value <= Decimal(5)
    body = _BASE | {
        "itemListaServico": item,
        "exigibilidadeIss": exigibilidade,
        "aliquota": f"{value:f}",
        "issRetido": due,
    }
    if exigibilidade in (6, 7):
        body["numeroProcesso"] = "0001234-56.2025.8.26.0100"
    outcome = _parse_json(json.dumps(body))
    if expected:
        assert isinstance(outcome, InvoiceRequest), outcome
        assert outcome.aliquota == value
        assert outcome.aliquota_aplicada == (value if due else None)
    else:
        assert isinstance(outcome, ValidationFailed)
        assert [d.field for d in outcome.details] == ["aliquota"]


@settings(max_examples=examples(500))
@given(st.one_of(decimals_any_exponent(), near("0.01"), near(str(rules.MONEY_MAX))))
def test_money_is_accepted_exactly_above_zero_below_10_to_the_13_with_cents(
    value: Decimal,
) -> None:
    expected = places(value) <= 2 and Decimal(0) < value < Decimal(10) ** 13
    assert (rules.money_problem(value) is None) == expected, value
    if expected:
        assert rules.to_cents(value) == value


@pytest.mark.parametrize(
    "number", ["1E+999999999", "1E-999999999", "-0E+5", "9999999999999.995", "1e13", "1E-3"]
)
def test_extreme_exponents_are_refused_without_expanding_them(number: str) -> None:
    value = Decimal(number)
    assert rules.money_problem(value) is not None
    # -0E+5 is zero, a rate the items without the 2% floor may have.
    assert (rules.aliquota_problem(value) is None) == value.is_zero()


@pytest.mark.parametrize("field", ["aliquota", "valorDeducoes", "descontoCondicionado"])
def test_a_negative_zero_is_read_as_zero(field: str) -> None:
    """'-0' is accepted (it is zero) and read as 0.00, without its sign: the GET view
    (format(value, 'f')) and the XML both say 0.00."""
    outcome = _parse_json(json.dumps(_BASE | {"itemListaServico": "07.02", field: "-0"}))
    assert isinstance(outcome, InvoiceRequest), outcome
    assert format(getattr(outcome, _snake(field)), "f") in ("0.00", "0")


_BASE: dict[str, Any] = {
    "cnpj": "11222333000181",
    "municipio": "3550308",
    "competencia": "2026-03-01",
    "total": "1.00",
    "itemListaServico": "01.07",
    "discriminacao": "Consultoria",
    "aliquota": "5.00",
    "issRetido": True,
}


def _parse_json(text: str) -> InvoiceRequest | ValidationFailed:
    """The body as the handler reads it: JSON numbers become Decimal, never float."""
    body = json.loads(text, parse_float=Decimal)
    try:
        return parse_invoice_request(body, today=TODAY)
    except ValidationFailed as exc:
        return exc


@settings(max_examples=examples(300))
@given(
    st.decimals(min_value=Decimal("0.5"), max_value=Decimal("6"), places=3),
    st.integers(-3, 3),
    st.sampled_from(["e", "E"]),
)
def test_a_json_aliquota_in_exponent_form_is_read_exactly(
    value: Decimal, shift: int, letter: str
) -> None:
    mantissa = value.scaleb(-shift)
    others = json.dumps({k: v for k, v in _BASE.items() if k != "aliquota"})
    text = f'{others[:-1]}, "aliquota": {mantissa:f}{letter}{shift}}}'
    body = json.loads(text, parse_float=Decimal)
    assert body["aliquota"] == value
    outcome = _parse_json(text)
    expected = places(value) <= 2 and Decimal(2) <= value <= Decimal(5)
    if expected:
        assert isinstance(outcome, InvoiceRequest), outcome
        assert outcome.aliquota == value and str(outcome.aliquota) == f"{value:.2f}"
    else:
        assert isinstance(outcome, ValidationFailed)
        assert [d.field for d in outcome.details] == ["aliquota"]


@settings(max_examples=examples(200))
@given(st.integers(min_value=-(10**20), max_value=10**20))
def test_a_json_integer_total_is_accepted_exactly_when_in_range(number: int) -> None:
    outcome = _parse_json(json.dumps(_BASE | {"total": number}))
    if 0 < number < 10**13:
        assert isinstance(outcome, InvoiceRequest), outcome
        assert outcome.total == number
    else:
        assert isinstance(outcome, ValidationFailed)
        assert [d.field for d in outcome.details] == ["total"]


# --- competencia ----------------------------------------------------------------------------


@settings(max_examples=examples(500))
@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.timezones()
    ),
    st.integers(-3, 3),
)
def test_competencia_is_accepted_up_to_the_sao_paulo_date_of_any_instant(
    now: datetime, offset_days: int
) -> None:
    sao_paulo_today = now.astimezone(SAO_PAULO_SINCE_2019).date()
    competencia = sao_paulo_today + timedelta(days=offset_days)
    assert rules.fiscal_today(now) == sao_paulo_today
    body = _BASE | {"competencia": competencia.isoformat()}
    try:
        InvoiceRequest.model_validate(body, context={"today": now}, by_alias=True)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == (offset_days <= 0)


@settings(max_examples=examples(500))
@given(
    ibge_codes(),
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(-1, 1),
)
@example("2605459", datetime(2026, 3, 10, 2, 30, tzinfo=UTC), 0)  # Noronha: already the 10th
@example("1200401", datetime(2026, 3, 11, 4, 30, tzinfo=UTC), 1)  # Rio Branco: still the 10th
def test_competencia_is_accepted_up_to_the_date_in_the_municipality_s_own_zone(
    code: str, now: datetime, offset_days: int
) -> None:
    known = municipalities.municipality(code)
    assert known is not None
    local_today = now.astimezone(ZoneInfo(known.zone)).date()
    competencia = local_today + timedelta(days=offset_days)
    body = _BASE | {"municipio": code, "competencia": competencia.isoformat()}
    try:
        InvoiceRequest.model_validate(body, context={"today": now}, by_alias=True)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == (offset_days <= 0), (known, local_today)


@settings(max_examples=examples(200))
@given(st.dates(min_value=date(1900, 1, 1), max_value=TODAY))
@example(date(2003, 8, 1))
@example(date(2003, 7, 31))
def test_competencia_is_accepted_from_the_day_lc_116_took_effect(competencia: date) -> None:
    outcome = _parse_json(json.dumps(_BASE | {"competencia": competencia.isoformat()}))
    if competencia >= date(2003, 8, 1):
        assert isinstance(outcome, InvoiceRequest), outcome
    else:
        assert isinstance(outcome, ValidationFailed)
        assert [d.field for d in outcome.details] == ["competencia"]


@settings(max_examples=examples(200))
@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)))
def test_between_midnight_and_3_utc_it_is_still_yesterday_in_sao_paulo(moment: datetime) -> None:
    instant = moment.replace(tzinfo=UTC)
    expected = (instant - timedelta(hours=3)).date()
    assert rules.fiscal_today(instant) == expected
    if instant.hour < 3:
        assert rules.fiscal_today(instant) == instant.date() - timedelta(days=1)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.fiscal_today(datetime(2026, 3, 10, 12, 0))


# --- text lengths ----------------------------------------------------------------------------

TEXT_LIMITS = {"discriminacao": 2000, "inscricaoMunicipal": 15, "codigoTributacaoMunicipio": 20}
SAMPLE_CHARS = st.one_of(
    st.sampled_from([*WHITE_SPACE, "\x00", "\x1c", "\x1f", "\x7f", "\ufffe", "\ud800"]),
    st.characters(codec="utf-8", exclude_categories=["Cs"]),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=["Cs"]),
)


def _xml_char(char: str) -> bool:
    code = ord(char)
    return (
        char in "\t\n\r"
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


@settings(max_examples=examples(400))
@given(
    st.sampled_from(sorted(TEXT_LIMITS)),
    st.lists(SAMPLE_CHARS, max_size=25).map("".join),
    st.integers(0, 3),
)
def test_free_text_is_accepted_iff_stripped_length_fits_and_every_char_is_xml(
    field: str, core: str, extra: int
) -> None:
    limit = TEXT_LIMITS[field]
    # Around the limit: pad the generated core to limit - 1 .. limit + 2 characters.
    text = core + "x" * max(0, limit - 1 + extra - len(core)) if extra else core
    stripped = text.strip(WHITE_SPACE)
    expected = 1 <= len(stripped) <= limit and all(_xml_char(c) for c in stripped)
    outcome = parse_invoice_request(_BASE | {field: text}, today=TODAY) if expected else None
    if expected:
        assert getattr(outcome, _snake(field)) == stripped
    else:
        with pytest.raises(ValidationFailed) as caught:
            parse_invoice_request(_BASE | {field: text}, today=TODAY)
        assert [d.field for d in caught.value.details] == [field]


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
