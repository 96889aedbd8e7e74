"""Fiscal rules as small pure functions: identifiers, codes, amounts and dates.

brazilnum does the check-digit arithmetic; this module decides what input shape is acceptable
before handing it over (brazilnum silently drops stray characters and pads short numbers,
which an API must not do). Each rule has a `*_problem` form that returns a message a person
can act on, or None when the value is fine, and an `is_valid_*` form built on it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from brazilnum.cnpj import validate_cnpj as _brazilnum_cnpj
from brazilnum.cpf import validate_cpf as _brazilnum_cpf
from brazilnum.muni import validate_muni as _brazilnum_muni

from nfse_core.domain import places
from nfse_core.domain.lc116 import LC116_ITEMS

# Brasília time, the calendar of the providers' dates when they carry no offset. Without a tz
# database (a slim image) UTC-3 is the same thing: Brazil has had no daylight saving since 2019
# (Decreto 9.772/2019). A municipality's own calendar is places.zone_of.
try:
    FISCAL_TZ: tzinfo = ZoneInfo("America/Sao_Paulo")
except ZoneInfoNotFoundError:
    FISCAL_TZ = timezone(timedelta(hours=-3))

# IBGE code of each federative unit: the first two digits of a municipality code.
UF_IBGE_CODES: dict[str, str] = {
    "RO": "11", "AC": "12", "AM": "13", "RR": "14", "PA": "15", "AP": "16", "TO": "17",
    "MA": "21", "PI": "22", "CE": "23", "RN": "24", "PB": "25", "PE": "26", "AL": "27",
    "SE": "28", "BA": "29",
    "MG": "31", "ES": "32", "RJ": "33", "SP": "35",
    "PR": "41", "SC": "42", "RS": "43",
    "MS": "50", "MT": "51", "GO": "52", "DF": "53",
}  # fmt: skip
UFS: frozenset[str] = frozenset(UF_IBGE_CODES)
_UF_BY_IBGE_PREFIX = {code: uf for uf, code in UF_IBGE_CODES.items()}

# tsAliquota: totalDigits 4, fractionDigits 2; the legal range per item is fiscal.aliquota_bounds.
ALIQUOTA_MAX = Decimal("5.00")
# tsValor: totalDigits 15, fractionDigits 2 -> at most 13 digits before the point.
MONEY_MAX_INTEGER_DIGITS = 13
MONEY_MAX = Decimal("9999999999999.99")
CENT = Decimal("0.01")

# The punctuation of CPF, CNPJ and CEP: '.', '/', '-' and the Unicode dashes (en and em dash,
# minus sign) that word processors substitute, as python-stdnum accepts. Blanks are not
# separators: "111444 77735" is two numbers, not one.
_DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2212"
_SEPARATORS = re.compile(f"[./{_DASHES}]")
_CEP_SEPARATORS = re.compile(f"[{_DASHES}]")
_BLANK = re.compile(r"\s")
_CNPJ_SHAPE = re.compile(r"[0-9A-Z]{12}[0-9]{2}")
_CPF_SHAPE = re.compile(r"[0-9]{11}")
_IBGE_SHAPE = re.compile(r"[0-9]{7}")
_CEP_SHAPE = re.compile(r"[0-9]{8}")
_ITEM_SHAPE = re.compile(r"([0-9]{1,2})\.([0-9]{2})")


# --- CNPJ / CPF ---------------------------------------------------------------------------


def normalize_cnpj(value: str) -> str:
    """Drop the punctuation ('.', '/', dashes) and uppercase the letters."""
    return _SEPARATORS.sub("", value).upper()


def blank_problem(value: str) -> str | None:
    """A number with a blank inside is refused rather than joined (the client may have pasted
    two numbers)."""
    return "must not contain spaces" if _BLANK.search(value) else None


def cnpj_problem(value: str) -> str | None:
    """Why `value` is not a CNPJ (numeric or the alphanumeric one of July 2026), or None."""
    if blank := blank_problem(value):
        return f"CNPJ {blank}"
    cnpj = normalize_cnpj(value)
    if len(cnpj) != 14:
        return f"CNPJ must have 14 characters, got {len(cnpj)}"
    if not _CNPJ_SHAPE.fullmatch(cnpj):
        return "CNPJ must be 12 letters or digits followed by 2 check digits"
    if len(set(cnpj)) == 1 or not _brazilnum_cnpj(cnpj, autopad=False):
        return "CNPJ check digits do not match"
    return None


def is_valid_cnpj(value: str) -> bool:
    return cnpj_problem(value) is None


def normalize_cpf(value: str) -> str:
    """Drop the punctuation ('.', dashes)."""
    return _SEPARATORS.sub("", value)


def cpf_problem(value: str) -> str | None:
    """Why `value` is not a CPF, or None. Repeated-digit CPFs pass the arithmetic but are void."""
    if blank := blank_problem(value):
        return f"CPF {blank}"
    cpf = normalize_cpf(value)
    if not _CPF_SHAPE.fullmatch(cpf):
        return "CPF must have 11 digits"
    if len(set(cpf)) == 1 or not _brazilnum_cpf(cpf, autopad=False):
        return "CPF check digits do not match"
    return None


def is_valid_cpf(value: str) -> bool:
    return cpf_problem(value) is None


def normalize_cpf_or_cnpj(value: str) -> str:
    return normalize_cnpj(value)


def cpf_or_cnpj_problem(value: str) -> str | None:
    """11 characters is a CPF, 14 a CNPJ; anything else is neither."""
    if blank := blank_problem(value):
        return blank
    document = normalize_cpf_or_cnpj(value)
    if len(document) == 11:
        return cpf_problem(document)
    if len(document) == 14:
        return cnpj_problem(document)
    return f"must be a CPF (11 digits) or a CNPJ (14 characters), got {len(document)} characters"


def is_valid_cpf_or_cnpj(value: str) -> bool:
    return cpf_or_cnpj_problem(value) is None


# --- places -------------------------------------------------------------------------------


def ibge_problem(code: str) -> str | None:
    """Why `code` is not the IBGE code of a municipality: 7 digits, a UF prefix, one of the
    municipalities of the IBGE list (places), and, as a second check, its check digit
    (brazilnum knows the nine IBGE codes whose digit breaks the rule)."""
    if not _IBGE_SHAPE.fullmatch(code):
        return "IBGE municipality code must have 7 digits"
    if code[:2] not in _UF_BY_IBGE_PREFIX:
        return f"IBGE municipality code must start with a state code, not {code[:2]}"
    if not _brazilnum_muni(code):
        return "IBGE municipality code check digit does not match"
    if places.municipality(code) is None:
        return f"{code} is not the IBGE code of a Brazilian municipality"
    return None


def is_valid_ibge(code: str) -> bool:
    return ibge_problem(code) is None


def uf_of_ibge(code: str) -> str | None:
    """The UF a municipality code belongs to (from its first two digits), or None."""
    return _UF_BY_IBGE_PREFIX.get(code[:2]) if _IBGE_SHAPE.fullmatch(code) else None


def is_valid_uf(value: str) -> bool:
    """One of the 27 federative units, in upper case."""
    return value in UFS


def normalize_cep(value: str) -> str:
    return _CEP_SEPARATORS.sub("", value)


def is_valid_cep(value: str) -> bool:
    """8 digits once the dash is dropped ("01310-100", "01310\u2013100" or "01310100")."""
    return _BLANK.search(value) is None and _CEP_SHAPE.fullmatch(normalize_cep(value)) is not None


# --- service ------------------------------------------------------------------------------


def is_lc116_item(value: str) -> bool:
    """A subitem of the LC 116/2003 list, in the "NN.NN" form the ABRASF XSD enumerates."""
    return value in LC116_ITEMS


def lc116_problem(value: str) -> str | None:
    if is_lc116_item(value):
        return None
    shape = _ITEM_SHAPE.fullmatch(value)
    if shape:
        padded = f"{int(shape.group(1)):02d}.{shape.group(2)}"
        if padded != value and padded in LC116_ITEMS:
            return f"must be in the NN.NN form: use {padded}"
    return "must be an LC 116/2003 service item in the NN.NN form, e.g. 01.07"


_CODE_SEPARATORS = re.compile(r"[./\-]")
_CNAE_SHAPE = re.compile(r"[0-9]{7}")
_NBS_SHAPE = re.compile(r"[0-9]{9}")
_CTRIBNAC_SHAPE = re.compile(r"[0-9]{6}")
_PAIS_SHAPE = re.compile(r"[0-9]{4}")
# Brazil in the BACEN country table: an export goes to another country.
_PAIS_BRASIL = "1058"


def only_digits(value: str) -> str:
    """A code without its punctuation ("6201-5/01" -> "6201501")."""
    return _CODE_SEPARATORS.sub("", value)


def cnae_problem(value: str) -> str | None:
    """A CNAE 2.3 subclass: 7 digits, punctuation allowed (ABRASF 2.04 tsCodigoCnae: int of at
    most 7 digits; NFS-e Nacional cCNAE)."""
    if _CNAE_SHAPE.fullmatch(only_digits(value)) is None:
        return "must be a CNAE subclass of 7 digits, e.g. 6201-5/01"
    return None


def nbs_problem(value: str) -> str | None:
    """An NBS code (Nomenclatura Brasileira de Serviços): 9 digits (NFS-e Nacional cNBS;
    ABRASF 2.04 tsCodigoNbs holds at most 9 characters), dots allowed."""
    if _NBS_SHAPE.fullmatch(only_digits(value)) is None:
        return "must be an NBS code of 9 digits, e.g. 1.1506.21.00"
    return None


def ctribnac_problem(value: str) -> str | None:
    """The código de tributação nacional (NFS-e Nacional cTribNac): 6 digits, the LC 116 item
    (2), its subitem (2) and the national list's desdobramento (2)."""
    if _CTRIBNAC_SHAPE.fullmatch(only_digits(value)) is None:
        return "must have 6 digits: item, subitem and desdobramento, e.g. 010701"
    return None


def ctribnac_item_problem(code: str, item: str) -> str | None:
    """cTribNac begins with the LC 116 subitem it details (NFS-e Nacional DPS, cTribNac)."""
    expected = item.replace(".", "")
    if not code.startswith(expected):
        return f"must begin with {expected}, the digits of itemListaServico {item}"
    return None


_CST_IBS_CBS = re.compile(r"[0-9]{3}")
_SIX_DIGITS = re.compile(r"[0-9]{6}")


def cst_ibs_cbs_problem(value: str) -> str | None:
    """CST of IBS and CBS (LC 214/2025; NFS-e Nacional DPS 1.01 TSRTCCodSitTrib): 3 digits."""
    if _CST_IBS_CBS.fullmatch(value) is None:
        return "must be the CST of IBS/CBS: 3 digits, e.g. 000"
    return None


def six_digit_code_problem(value: str) -> str | None:
    """cClassTrib and cIndOp of IBS/CBS (DPS 1.01 TSRTCCodClassTrib, TSRTCCodIndOp): 6 digits."""
    if _SIX_DIGITS.fullmatch(value) is None:
        return "must have 6 digits, e.g. 000001"
    return None


def pais_problem(value: str) -> str | None:
    """A country of the BACEN table (ABRASF 2.04 tsCodigoPaisIbge: 4 characters), not Brazil."""
    if _PAIS_SHAPE.fullmatch(value) is None:
        return "must be a country code of the BACEN table: 4 digits, e.g. 2496 (United States)"
    if value == _PAIS_BRASIL:
        return "must be a country other than Brazil (1058)"
    return None


# --- amounts ------------------------------------------------------------------------------


def decimal_places(value: Decimal) -> int:
    """Significant digits after the point (1.50 has 1); exact, no rounding context involved."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0 or value.is_zero():
        return 0
    places = -exponent
    index = len(digits) - 1
    while places > 0 and index >= 0 and digits[index] == 0:
        places -= 1
        index -= 1
    return places


def integer_digits(value: Decimal) -> int:
    """Digits before the point (0.5 has 0); exact for any finite Decimal."""
    if not value.is_finite() or value.is_zero():
        return 0
    return max(value.adjusted() + 1, 0)


def money_problem(value: Decimal) -> str | None:
    """Amounts are finite, greater than zero, in cents, and fit ABRASF tsValor (15 digits)."""
    if value.is_finite() and value <= 0:
        return "must be greater than zero"
    return amount_problem(value)


def amount_problem(value: Decimal) -> str | None:
    """Amounts that may be zero (deductions, discounts, retentions): finite, not negative, in
    cents, within ABRASF tsValor (minInclusive 0, 15 digits)."""
    if not value.is_finite():
        return "must be a finite number"
    if value < 0:
        return "must not be negative"
    if decimal_places(value) > 2:
        return "must have at most 2 decimal places"
    if integer_digits(value) > MONEY_MAX_INTEGER_DIGITS:
        return f"must be at most {MONEY_MAX}"
    return None


def is_valid_money(value: Decimal) -> bool:
    return money_problem(value) is None


def aliquota_problem(value: Decimal) -> str | None:
    """The ISS rate, in percent, at most 2 decimals, 0 to 5.00 (LC 116 art. 8, II); the floor of
    the service's item is fiscal.aliquota_bounds, checked with the item."""
    if not value.is_finite():
        return "must be a finite number"
    if decimal_places(value) > 2:
        return "must have at most 2 decimal places"
    if not 0 <= value <= ALIQUOTA_MAX:
        return f"must be between 0 and {ALIQUOTA_MAX} (percent)"
    return None


def is_valid_aliquota(value: Decimal) -> bool:
    return aliquota_problem(value) is None


def to_cents(value: Decimal) -> Decimal:
    """The value with exactly two decimals; call only on values the rules above accepted."""
    cents = value.quantize(CENT)
    # A negative zero ("-0") is zero: its sign would show in GET ("-0.00").
    return cents.copy_abs() if cents.is_zero() else cents


# --- dates --------------------------------------------------------------------------------

# The earliest competencia: LC 116/2003, whose service list and rates these rules apply, took
# effect on its publication, 2003-08-01 (art. 10). An earlier date is a typing error.
COMPETENCIA_MIN = date(2003, 8, 1)


def fiscal_today(now: datetime | None = None, municipio: str | None = None) -> date:
    """Today's date where the service is taxed: in the municipality's own time zone (places),
    or Brasília time without one; from `now` if given."""
    zone = places.zone_of(municipio) if municipio is not None else FISCAL_TZ
    moment = now if now is not None else datetime.now(zone)
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return moment.astimezone(zone).date()


def competencia_problem(
    competencia: date, today: date | None = None, municipio: str | None = None
) -> str | None:
    """The competencia (when the service was rendered) is neither in the future, in the
    municipality's calendar, nor before COMPETENCIA_MIN."""
    if competencia < COMPETENCIA_MIN:
        return f"must not be before {COMPETENCIA_MIN.isoformat()} (LC 116/2003 took effect)"
    reference = today if today is not None else fiscal_today(municipio=municipio)
    if competencia > reference:
        known = places.municipality(municipio) if municipio is not None else None
        where = f"{known.name} ({known.zone})" if known else "America/Sao_Paulo"
        return f"must not be in the future (today is {reference.isoformat()} in {where})"
    return None


def is_valid_competencia(competencia: date, today: date | None = None) -> bool:
    return competencia_problem(competencia, today) is None
