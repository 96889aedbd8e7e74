"""Fiscal rules (nfse_core.domain.rules), the LC 116 list against the XSD, and invoice ids."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from brazilnum.cnpj import cnpj_from_firm_id, random_cnpj
from brazilnum.cpf import random_cpf
from brazilnum.muni import SHIM, muni_check_digit
from lxml import etree
from ulid import ULID

from nfse_core.domain import rules
from nfse_core.domain.ids import invoice_ids, is_invoice_id, new_invoice_id
from nfse_core.domain.lc116 import LC116_ITEMS
from nfse_core.xml.schema import schema_path

pytestmark = pytest.mark.unit

XSD_NS = {"xsd": "http://www.w3.org/2001/XMLSchema"}


# --- CNPJ ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("11.222.333/0001-81", "11222333000181"),
        ("11.222.333/0001\u201381", "11222333000181"),
        ("12.abc.345/01de-35", "12ABC34501DE35"),
    ],
)
def test_normalize_cnpj(raw: str, normalized: str) -> None:
    assert rules.normalize_cnpj(raw) == normalized


@pytest.mark.parametrize(
    "cnpj",
    [
        "11222333000181",
        "11.222.333/0001-81",
        "12ABC34501DE35",  # the Receita Federal example of the alphanumeric CNPJ
        "12.ABC.345/01DE-35",
        "12abc34501de35",
        cnpj_from_firm_id("A1B2C3D4", "0001"),
        cnpj_from_firm_id("ZZZZZZZZ", "ZZZZ"),
    ],
)
def test_valid_cnpj(cnpj: str) -> None:
    assert rules.is_valid_cnpj(cnpj)
    assert rules.cnpj_problem(cnpj) is None


def test_random_cnpjs_from_brazilnum_are_valid() -> None:
    for _ in range(50):
        assert rules.is_valid_cnpj(random_cnpj(formatted=True))
        assert rules.is_valid_cnpj(random_cnpj(formatted=False, alphanumeric=True))


@pytest.mark.parametrize(
    ("cnpj", "message"),
    [
        ("11222333000182", "CNPJ check digits do not match"),
        ("12ABC34501DE36", "CNPJ check digits do not match"),
        ("12ABC34501DF35", "CNPJ check digits do not match"),
        ("00000000000000", "CNPJ check digits do not match"),
        ("12ABC34501DE3A", "CNPJ must be 12 letters or digits followed by 2 check digits"),
        ("1122233300018#", "CNPJ must be 12 letters or digits followed by 2 check digits"),
        ("191", "CNPJ must have 14 characters, got 3"),  # brazilnum would pad it; we do not
        ("112223330001810", "CNPJ must have 14 characters, got 15"),
        ("", "CNPJ must have 14 characters, got 0"),
    ],
)
def test_invalid_cnpj(cnpj: str, message: str) -> None:
    assert not rules.is_valid_cnpj(cnpj)
    assert rules.cnpj_problem(cnpj) == message


# --- CPF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cpf", ["52998224725", "529.982.247-25", "11144477735"])
def test_valid_cpf(cpf: str) -> None:
    assert rules.is_valid_cpf(cpf)
    assert rules.normalize_cpf(cpf).isdigit()


def test_random_cpfs_from_brazilnum_are_valid() -> None:
    for _ in range(50):
        assert rules.is_valid_cpf(random_cpf(formatted=True))


@pytest.mark.parametrize(
    ("cpf", "message"),
    [
        ("52998224724", "CPF check digits do not match"),
        ("11111111111", "CPF check digits do not match"),  # passes the arithmetic, still void
        ("00000000000", "CPF check digits do not match"),
        ("x52998224725", "CPF must have 11 digits"),  # brazilnum would drop the x
        ("5299822472", "CPF must have 11 digits"),
        ("5299822472A", "CPF must have 11 digits"),
    ],
)
def test_invalid_cpf(cpf: str, message: str) -> None:
    assert not rules.is_valid_cpf(cpf)
    assert rules.cpf_problem(cpf) == message


@pytest.mark.parametrize(
    ("document", "valid"),
    [
        ("529.982.247-25", True),
        ("11.222.333/0001-81", True),
        ("12ABC34501DE35", True),
        ("52998224724", False),
        ("11222333000182", False),
        ("123456789012", False),
        ("", False),
    ],
)
def test_cpf_or_cnpj(document: str, valid: bool) -> None:
    assert rules.is_valid_cpf_or_cnpj(document) is valid


def test_cpf_or_cnpj_length_message() -> None:
    assert rules.cpf_or_cnpj_problem("123") == (
        "must be a CPF (11 digits) or a CNPJ (14 characters), got 3 characters"
    )


# --- IBGE, UF, CEP ------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["3550308", "3304557", "5300108", "4106902", "1100015"])
def test_valid_ibge(code: str) -> None:
    assert rules.is_valid_ibge(code)


@pytest.mark.parametrize("code", sorted(SHIM))
def test_ibge_official_exceptions_are_valid(code: str) -> None:
    # These nine codes do not follow the check-digit rule and are valid all the same.
    assert rules.is_valid_ibge(code)


def test_an_exception_really_breaks_the_check_digit_rule() -> None:
    code = "2201919"  # Bom Princípio do Piauí
    assert muni_check_digit(code[:6]) != int(code[6])
    assert rules.is_valid_ibge(code)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("3550309", "IBGE municipality code check digit does not match"),
        ("355030", "IBGE municipality code must have 7 digits"),
        ("35503080", "IBGE municipality code must have 7 digits"),
        ("355030x", "IBGE municipality code must have 7 digits"),
        ("355-0308", "IBGE municipality code must have 7 digits"),
        ("0000000", "IBGE municipality code must start with a state code, not 00"),
        ("9900000", "IBGE municipality code must start with a state code, not 99"),
    ],
)
def test_invalid_ibge(code: str, message: str) -> None:
    assert not rules.is_valid_ibge(code)
    assert rules.ibge_problem(code) == message


def test_ibge_with_good_check_digit_but_unknown_state_is_invalid() -> None:
    base = "990001"
    code = base + str(muni_check_digit(base))
    assert not rules.is_valid_ibge(code)


def test_uf_of_ibge() -> None:
    assert rules.uf_of_ibge("3550308") == "SP"
    assert rules.uf_of_ibge("5300108") == "DF"
    assert rules.uf_of_ibge("123") is None


def test_there_are_27_ufs() -> None:
    assert len(rules.UFS) == 27
    assert all(rules.is_valid_uf(uf) for uf in rules.UFS)


@pytest.mark.parametrize("uf", ["sp", "XX", "", "SPP", "S"])
def test_invalid_uf(uf: str) -> None:
    assert not rules.is_valid_uf(uf)


@pytest.mark.parametrize(
    ("cep", "valid"),
    [
        ("01310100", True),
        ("01310-100", True),
        ("0131010", False),
        ("013101000", False),
        ("01.310-100", False),
        ("01310\u2013100", True),  # en dash
        ("01310\u2014100", True),  # em dash
        ("01310 100", False),
        ("0131010A", False),
        ("", False),
    ],
)
def test_cep(cep: str, valid: bool) -> None:
    assert rules.is_valid_cep(cep) is valid


# --- LC 116 -------------------------------------------------------------------------------


def test_lc116_items_include_the_xsd_enumeration() -> None:
    # LC116_ITEMS is the law's list in force; the 2.04 XSD lacks seven of its subitems
    # (tests/unit/test_lc116.py holds the exact difference and the list against the law).
    tree = etree.parse(str(schema_path()))
    values = tree.xpath(
        '//xsd:simpleType[@name="tsItemListaServico"]//xsd:enumeration/@value',
        namespaces=XSD_NS,
    )
    assert isinstance(values, list)
    assert len(values) == len(set(values))
    assert {str(v) for v in values} <= LC116_ITEMS


@pytest.mark.parametrize(
    ("item", "valid"),
    [("01.07", True), ("14.01", True), ("40.01", True), ("1.07", False), ("0107", False),
     ("01.7", False), ("99.99", False), ("", False), (" 01.07", False)],
)  # fmt: skip
def test_is_lc116_item(item: str, valid: bool) -> None:
    assert rules.is_lc116_item(item) is valid


def test_lc116_problem_suggests_the_padded_form() -> None:
    assert rules.lc116_problem("1.07") == "must be in the NN.NN form: use 01.07"
    assert rules.lc116_problem("99.99") == (
        "must be an LC 116/2003 service item in the NN.NN form, e.g. 01.07"
    )
    assert rules.lc116_problem("01.07") is None


# --- money and aliquota -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "must be greater than zero"),
        ("0.00", "must be greater than zero"),
        ("-1", "must be greater than zero"),
        ("0.01", None),
        ("1.001", "must have at most 2 decimal places"),
        ("1.100", None),  # a trailing zero is not a third decimal
        ("1E+2", None),
        ("1E-30", "must have at most 2 decimal places"),
        ("9999999999999.99", None),
        ("10000000000000", "must be at most 9999999999999.99"),
        ("1E+30", "must be at most 9999999999999.99"),
        ("NaN", "must be a finite number"),
        ("Infinity", "must be a finite number"),
        ("1.0000000000000000000000000000001", "must have at most 2 decimal places"),
    ],
)
def test_money(value: str, problem: str | None) -> None:
    assert rules.money_problem(Decimal(value)) == problem
    assert rules.is_valid_money(Decimal(value)) is (problem is None)


@pytest.mark.parametrize(
    ("value", "valid"),
    [("1.99", True), ("2.00", True), ("2", True), ("3.5", True), ("5.00", True),
     ("5.01", False), ("2.001", False), ("2.0000", True), ("0", True), ("-3", False),
     ("NaN", False), ("Infinity", False)],
)  # fmt: skip
def test_aliquota(value: str, valid: bool) -> None:
    # The shape and the 5% ceiling (LC 116 art. 8, II); the item's floor is fiscal's rule
    # (tests/unit/test_fiscal.py).
    assert rules.is_valid_aliquota(Decimal(value)) is valid


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", None), ("0.00", None), ("12.34", None), ("-0.01", "must not be negative"),
     ("1.001", "must have at most 2 decimal places"), ("NaN", "must be a finite number"),
     ("10000000000000", "must be at most 9999999999999.99")],
)  # fmt: skip
def test_amount_may_be_zero(value: str, problem: str | None) -> None:
    assert rules.amount_problem(Decimal(value)) == problem


@pytest.mark.parametrize(
    "document",
    ["11.222.333/0001\u201381", "11.222.333/0001\u201481", "529.982.247\u201325",
     "529.982.247\u201425", "529.982.247\u221225"],
)  # fmt: skip
def test_unicode_dashes_separate_like_a_hyphen(document: str) -> None:
    assert rules.cpf_or_cnpj_problem(document) is None
    assert rules.normalize_cpf_or_cnpj(document) in ("11222333000181", "52998224725")


@pytest.mark.parametrize(
    ("document", "problem"),
    [("111444 77735", "must not contain spaces"), ("11222333\t000181", "must not contain spaces")],
)
def test_whitespace_inside_a_number_is_refused(document: str, problem: str) -> None:
    assert rules.cpf_or_cnpj_problem(document) == problem
    assert rules.cpf_problem("111.444.777 35") == "CPF must not contain spaces"
    assert rules.cnpj_problem("11 222 333 0001 81") == "CNPJ must not contain spaces"


@pytest.mark.parametrize("code", ["3500006", "5300009"])
def test_codes_with_a_good_check_digit_that_name_no_municipality(code: str) -> None:
    assert muni_check_digit(code[:6]) == int(code[6])
    assert rules.ibge_problem(code) == f"{code} is not the IBGE code of a Brazilian municipality"


def test_the_newest_municipality_is_known() -> None:
    assert rules.is_valid_ibge("5101837")  # Boa Esperança do Norte, MT (installed 2025)


def test_to_cents() -> None:
    assert str(rules.to_cents(Decimal("10.5"))) == "10.50"
    assert str(rules.to_cents(Decimal("1E+2"))) == "100.00"


# --- dates --------------------------------------------------------------------------------


def test_fiscal_today_is_sao_paulo_date() -> None:
    # 02:00 UTC on New Year's Day is still New Year's Eve in São Paulo (UTC-3).
    assert rules.fiscal_today(datetime(2026, 1, 1, 2, 0, tzinfo=UTC)) == date(2025, 12, 31)
    assert rules.fiscal_today(datetime(2026, 1, 1, 3, 0, tzinfo=UTC)) == date(2026, 1, 1)


def test_fiscal_today_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rules.fiscal_today(datetime(2026, 1, 1))


def test_competencia_today_is_fine_tomorrow_is_not() -> None:
    today = date(2026, 3, 10)
    assert rules.is_valid_competencia(today, today)
    assert rules.is_valid_competencia(today - timedelta(days=400), today)
    assert rules.competencia_problem(today + timedelta(days=1), today) == (
        "must not be in the future (today is 2026-03-10 in America/Sao_Paulo)"
    )


def test_today_in_a_municipality_is_its_own_date() -> None:
    # 02:30 UTC: 23:30 the day before in Brasília, 00:30 the next day in Noronha (UTC-2).
    moment = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    assert rules.fiscal_today(moment, "2605459") == date(2026, 1, 1)
    assert rules.fiscal_today(moment, "3550308") == date(2025, 12, 31)
    # 04:30 UTC: 1 January in Brasília, still 31 December in Rio Branco (UTC-5).
    later = datetime(2026, 1, 1, 4, 30, tzinfo=UTC)
    assert rules.fiscal_today(later, "1200401") == date(2025, 12, 31)
    assert rules.fiscal_today(later, "3550308") == date(2026, 1, 1)


def test_competencia_defaults_to_the_real_today() -> None:
    assert rules.is_valid_competencia(rules.fiscal_today())
    assert not rules.is_valid_competencia(rules.fiscal_today() + timedelta(days=2))


# --- ids ----------------------------------------------------------------------------------


def test_new_invoice_id_is_a_ulid() -> None:
    invoice_id = new_invoice_id()
    assert len(invoice_id) == 26
    assert is_invoice_id(invoice_id)
    assert str(ULID.from_str(invoice_id)) == invoice_id


def test_new_invoice_id_takes_its_time_from_now() -> None:
    now = datetime(2026, 3, 10, 12, 0, 0, 123000, tzinfo=UTC)
    invoice_id = new_invoice_id(now)
    assert ULID.from_str(invoice_id).datetime == now


def test_invoice_ids_sort_by_time() -> None:
    start = datetime(2026, 3, 10, tzinfo=UTC)
    ids = [new_invoice_id(start + timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_invoice_ids_factory_uses_the_clock() -> None:
    moments = iter([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)])
    new_id = invoice_ids(lambda: next(moments))
    first, second = new_id(), new_id()
    assert first < second
    assert ULID.from_str(first).datetime == datetime(2026, 1, 1, tzinfo=UTC)


def test_new_invoice_id_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        new_invoice_id(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "01JABCDEFGHJKMNPQRSTVWXYZ",  # 25
        "01JABCDEFGHJKMNPQRSTVWXYZ00",  # 27
        "01JABCDEFGHJKMNPQRSTVWXYZI",  # I is not Crockford
        "01JABCDEFGHJKMNPQRSTVWXYZU",  # nor U
        "81JABCDEFGHJKMNPQRSTVWXYZ0",  # beyond 128 bits
        "01jabcdefghjkmnpqrstvwxyz0",  # lower case: not the key we store
        "../../etc/passwd0000000000",
        None,
        12345,
    ],
)
def test_is_invoice_id_rejects_garbage(value: object) -> None:
    assert not is_invoice_id(value)


def test_is_invoice_id_accepts_canonical() -> None:
    assert is_invoice_id("01JABCDEFGHJKMNPQRSTVWXYZ0")
    assert is_invoice_id("7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
