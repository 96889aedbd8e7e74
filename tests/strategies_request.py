"""Hypothesis strategies for valid invoice request bodies (the JSON the API receives).

Every body `request_bodies` draws satisfies the field rules and the cross-field rules of
nfse_core.domain.models.InvoiceRequest, derived here from the issue's statement of them (not
from the model's code): exigibilidadeIss 1-7, numeroProcesso iff 6/7, codigoPais iff 4 (and then
no municipioIncidencia), aliquota in its item's range when ISS is due (1/6/7) and optional
otherwise, issRetido only when ISS is due, responsavelRetencao only with issRetido (an
intermediario when it names one), deductions, discounts and retentions drawn as shares of the
total so that the base and the net value stay >= 0. With `full`, every optional field is
present so that any of them can be corrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import ROUND_CEILING, Decimal
from typing import Any

from brazilnum.cnpj import cnpj_check_digits, format_cnpj
from brazilnum.cpf import cpf_check_digits, format_cpf
from hypothesis import strategies as st

from nfse_core.domain import places, rules
from nfse_core.domain.lc116 import LC116_ITEMS

TODAY = date(2026, 3, 10)
# LC 116/2003 took effect on 2003-08-01 (art. 10): no earlier competencia is accepted.
COMPETENCIA_MIN = date(2003, 8, 1)
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"
# Hyphen, non-breaking hyphen, figure dash, en dash, em dash, minus: separators like '-'.
DASHES = ["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212"]
# LC 116 art. 8-A §1: these subitems may be taxed below the 2% floor (0-5%).
ITEMS_WITHOUT_FLOOR = frozenset({"07.02", "07.05", "16.01"})
ISS_DUE = frozenset({1, 6, 7})
EXPORT = 4
BRASIL = "1058"
RETENCOES = ("pis", "cofins", "inss", "ir", "csll", "outras")
AMOUNT_FIELDS = ("valorDeducoes", "descontoIncondicionado", "descontoCondicionado")

TextStrategy = Callable[[int], st.SearchStrategy[str]]
NumberForms = Callable[[Decimal], st.SearchStrategy[Any]]


# --- identifiers and codes ----------------------------------------------------------------


def _dashed(draw: st.DrawFn, formatted: str) -> str:
    return formatted.replace("-", draw(st.sampled_from(DASHES)))


@st.composite
def cnpjs(draw: st.DrawFn) -> str:
    base = draw(st.text(alphabet=ALNUM, min_size=12, max_size=12))
    if len(set(base)) == 1:
        base = "1" + base[1:11] + "2"
    first, second = cnpj_check_digits(base)
    cnpj = f"{base}{first}{second}"
    style = draw(st.sampled_from(["plain", "formatted", "lower"]))
    if style == "formatted":
        return _dashed(draw, str(format_cnpj(cnpj)))
    return cnpj.lower() if style == "lower" else cnpj


@st.composite
def cpfs(draw: st.DrawFn) -> str:
    base = draw(st.text(alphabet=DIGITS, min_size=9, max_size=9))
    if len(set(base)) == 1:  # repeated digits are void CPFs
        base = base[:8] + str((int(base[8]) + 1) % 10)
    first, second = cpf_check_digits(base)
    cpf = f"{base}{first}{second}"
    return _dashed(draw, str(format_cpf(cpf))) if draw(st.booleans()) else cpf


def ibge_codes() -> st.SearchStrategy[str]:
    """A real municipality's IBGE code (the list is read when the strategy is first drawn)."""
    return st.deferred(lambda: st.sampled_from(sorted(places.municipality_codes())))


@st.composite
def ceps(draw: st.DrawFn) -> str:
    digits = draw(st.text(DIGITS, min_size=8, max_size=8))
    separator = draw(st.sampled_from(["", *DASHES]))
    return f"{digits[:5]}{separator}{digits[5:]}"


@st.composite
def cnaes(draw: st.DrawFn) -> str:
    """A CNAE subclass, 7 digits, plain or punctuated ("6201-5/01", "62.01-5/01")."""
    d = draw(st.text(DIGITS, min_size=7, max_size=7))
    return draw(st.sampled_from([d, f"{d[:4]}-{d[4]}/{d[5:]}", f"{d[:2]}.{d[2:4]}-{d[4]}/{d[5:]}"]))


@st.composite
def nbss(draw: st.DrawFn) -> str:
    """An NBS code, 9 digits, plain or dotted ("1.1506.21.00")."""
    d = draw(st.text(DIGITS, min_size=9, max_size=9))
    return draw(st.sampled_from([d, f"{d[0]}.{d[1:5]}.{d[5:7]}.{d[7:]}"]))


@st.composite
def tribnacs(draw: st.DrawFn, item: str) -> str:
    """cTribNac: the item's 4 digits and a 2-digit desdobramento, plain or dotted."""
    tail = draw(st.text(DIGITS, min_size=2, max_size=2))
    return draw(st.sampled_from([item.replace(".", "") + tail, f"{item}.{tail}"]))


def paises() -> st.SearchStrategy[str]:
    """A 4-digit BACEN country code other than Brazil's."""
    return st.text(DIGITS, min_size=4, max_size=4).filter(lambda c: c != BRASIL)


def emails() -> st.SearchStrategy[str]:
    local = st.from_regex(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,40}", fullmatch=True)
    host = st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){1,2}", fullmatch=True)
    return st.builds(lambda a, b: f"{a}@{b}"[:80], local, host)


# --- text and numbers ---------------------------------------------------------------------


def simple_texts(max_size: int) -> st.SearchStrategy[str]:
    """Letters, digits and punctuation only: no blanks to strip, nothing XML cannot carry."""
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
        return f"{value:f}"
    if style == "int" and value == value.to_integral_value():
        return int(value)
    return value


def client_numbers(value: Decimal) -> st.SearchStrategy[Any]:
    return st.sampled_from(["dec", "str", "int"]).map(lambda style: as_client_number(value, style))


def _from_cents(count: int) -> Decimal:
    return Decimal(count).scaleb(-2)


def _part(draw: st.DrawFn, budget: int) -> int:
    """0..budget cents, often one of the ends."""
    return draw(st.sampled_from([0, budget]) | st.integers(0, budget))


# --- the request --------------------------------------------------------------------------


@st.composite
def enderecos(draw: st.DrawFn, text: TextStrategy = simple_texts, full: bool = False) -> Any:
    code = draw(ibge_codes())
    uf = rules.uf_of_ibge(code)
    assert uf is not None
    endereco: dict[str, Any] = {
        "logradouro": draw(text(255)),
        "numero": draw(text(60)),
        "bairro": draw(text(60)),
        "codigoMunicipio": code,
        "uf": draw(st.sampled_from([uf, uf.lower()])),
        "cep": draw(ceps()),
    }
    if full or draw(st.booleans()):
        endereco["complemento"] = draw(text(60))
    return endereco


@st.composite
def tomadores(
    draw: st.DrawFn,
    text: TextStrategy = simple_texts,
    full: bool = False,
    abroad: bool = False,
    razao_social_odds: int = 2,
) -> dict[str, Any]:
    """A tomador; `abroad` (an export's) identifies by NIF and lives at an address abroad."""
    tomador: dict[str, Any] = {}
    if not abroad or full or draw(st.integers(0, 3)) == 0:
        tomador["cpfCnpj"] = draw(st.one_of(cpfs(), cnpjs()))
    # A full tomador at home has no NIF, so that its CPF/CNPJ stays required.
    if abroad or "cpfCnpj" not in tomador or (not full and draw(st.integers(0, 9)) == 0):
        tomador["nif"] = draw(text(40))
    if full or draw(st.integers(0, razao_social_odds - 1)) > 0:
        tomador["razaoSocial"] = draw(text(150))
    if full or draw(st.booleans()):
        tomador["email"] = draw(emails())
    where = "abroad" if abroad else "home"
    if not full:
        where = draw(st.sampled_from([where, where, "none", "home" if abroad else "abroad"]))
    if where == "home":
        tomador["endereco"] = draw(enderecos(text, full))
    elif where == "abroad":
        tomador["enderecoExterior"] = {
            "codigoPais": draw(paises()),
            "enderecoCompleto": draw(text(255)),
        }
    return tomador


def _aliquota(draw: st.DrawFn, item: str, due: bool) -> Decimal:
    low = "0.00" if item in ITEMS_WITHOUT_FLOOR or not due else "2.00"
    return draw(cents(low, "5.00") | st.sampled_from([Decimal(low), Decimal("5.00")]))


def _amounts(
    draw: st.DrawFn,
    payload: dict[str, Any],
    total: Decimal,
    withheld_rate: Decimal | None,
    forms: NumberForms,
    full: bool,
) -> None:
    """Deductions, discounts and retentions as shares of the total: base >= 0, net >= 0."""
    total_cents = int(total.scaleb(2))
    deducoes = _part(draw, total_cents) if full or draw(st.booleans()) else 0
    incondicionado = _part(draw, total_cents - deducoes) if full or draw(st.booleans()) else 0
    base = total_cents - deducoes - incondicionado
    # The ISS withheld is at most base x rate, rounded up to the cent.
    iss = 0
    if withheld_rate is not None:
        iss = int((Decimal(base) * withheld_rate / 100).to_integral_value(ROUND_CEILING))
    budget = total_cents - incondicionado - iss
    # descontoCondicionado, the six retentions and what is left of the net value.
    weights = draw(st.lists(st.integers(0, 100), min_size=8, max_size=8))
    if not full and draw(st.booleans()):
        weights = [0] * 7 + [1]
    weight = sum(weights)
    shares = [budget * w // weight for w in weights] if weight > 0 else [0] * 8
    if weights[-1] == 0 and weight > 0:  # net value exactly zero (give the remainder away)
        shares[weights.index(max(weights))] += budget - sum(shares)
    values = {
        "valorDeducoes": deducoes,
        "descontoIncondicionado": incondicionado,
        "descontoCondicionado": shares[0],
    }
    for name, count in values.items():
        if full or count or draw(st.booleans()):
            payload[name] = draw(forms(_from_cents(count)))
    retencoes = {
        name: draw(forms(_from_cents(count)))
        for name, count in zip(RETENCOES, shares[1:7], strict=True)
        if full or count or draw(st.booleans())
    }
    keep = full or len(retencoes) > 0
    if keep or draw(st.booleans()):
        payload["retencoes"] = retencoes


@st.composite
def request_bodies(
    draw: st.DrawFn,
    full: bool = False,
    text: TextStrategy = simple_texts,
    totals: st.SearchStrategy[Decimal] | None = None,
    forms: NumberForms = client_numbers,
    razao_social_odds: int = 2,
) -> dict[str, Any]:
    """A valid body. With `full` every optional field is present: exigibilidadeIss is then 4
    (an export, with codigoPais and a tomador abroad) or 6/7 (suspended: numeroProcesso,
    issRetido with responsavelRetencao, municipioIncidencia)."""
    item = draw(st.sampled_from(sorted(LC116_ITEMS)))
    exigibilidade = draw(st.sampled_from([4, 6, 7] if full else range(1, 8)))
    due = exigibilidade in ISS_DUE
    export = exigibilidade == EXPORT
    total = draw(totals if totals is not None else cents())
    payload: dict[str, Any] = {
        "cnpj": draw(cnpjs()),
        "municipio": draw(ibge_codes()),
        "competencia": draw(st.dates(min_value=COMPETENCIA_MIN, max_value=TODAY)).isoformat(),
        "total": draw(forms(total)),
        "itemListaServico": item,
        "discriminacao": draw(text(2000)),
        "issRetido": due and (full or draw(st.booleans())),
    }
    if full or exigibilidade != 1 or draw(st.booleans()):
        payload["exigibilidadeIss"] = exigibilidade
    aliquota = None
    if due or full or draw(st.booleans()):
        aliquota = _aliquota(draw, item, due)
        payload["aliquota"] = draw(forms(aliquota))
    if exigibilidade in (6, 7):
        payload["numeroProcesso"] = draw(text(30))
    if export:
        payload["codigoPais"] = draw(paises())
    elif full or draw(st.booleans()):
        payload["municipioIncidencia"] = draw(ibge_codes())
    _amounts(draw, payload, total, aliquota if payload["issRetido"] else None, forms, full)
    if payload["issRetido"] and (full or draw(st.booleans())):
        payload["responsavelRetencao"] = draw(st.sampled_from(["tomador", "intermediario"]))
    if payload.get("responsavelRetencao") == "intermediario" or full or draw(st.booleans()):
        payload["intermediario"] = {
            "cpfCnpj": draw(st.one_of(cpfs(), cnpjs())),
            "razaoSocial": draw(text(150)),
            "codigoMunicipio": draw(ibge_codes()),
        }
    for name, strategy in (
        ("inscricaoMunicipal", text(15)),
        ("codigoTributacaoMunicipio", text(20)),
        ("codigoTributacaoNacional", tribnacs(item)),
        ("codigoCnae", cnaes()),
        ("codigoNbs", nbss()),
        ("optanteSimplesNacional", st.booleans()),
        ("regimeEspecialTributacao", st.integers(1, 6)),
        ("incentivoFiscal", st.booleans()),
        ("reference", st.from_regex(r"[A-Za-z0-9._:/-]{1,64}", fullmatch=True)),
    ):
        if full or draw(st.booleans()):
            payload[name] = draw(strategy)
    if full or draw(st.integers(0, 3)) > 0:
        payload["tomador"] = draw(
            tomadores(text, full=full, abroad=export, razao_social_odds=razao_social_odds)
        )
    return payload
