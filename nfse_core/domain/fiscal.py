"""The fiscal rules of a service invoice: ISS exigibility, rates, and the amounts they yield.

Each rule lives here once, with its legal source; the request model (nfse_core.domain.models)
calls these functions and the document builders write what they compute.

Sources cited below:
- LC 116/2003: Lei Complementar 116 de 31/07/2003 (ISS), as amended by LC 157/2016 (art. 8-A,
  the 2% floor) and LC 183/2021;
- ABRASF 2.04: "Manual de Integração" of the ABRASF NFS-e model, version 2.04, and its XSD
  (nfse_v2-04.xsd: tsExigibilidadeISS, tsRegimeEspecialTributacao, tsResponsavelRetencao,
  tcValoresDeclaracaoServico);
- NFS-e Nacional: "Leiaute DPS" annex of the Sistema Nacional NFS-e (grupos trib/tribMun,
  vServPrest, vDedRed, vDescCondIncond, tribFed; validation rule E1289 on vISSQN).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import IntEnum

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
HUNDRED = Decimal(100)


class Exigibilidade(IntEnum):
    """ExigibilidadeISS, ABRASF 2.04 tsExigibilidadeISS (codes 1-7)."""

    EXIGIVEL = 1
    NAO_INCIDENCIA = 2
    ISENCAO = 3
    EXPORTACAO = 4
    IMUNIDADE = 5
    SUSPENSA_DECISAO_JUDICIAL = 6
    SUSPENSA_PROCESSO_ADMINISTRATIVO = 7


# ISS is computed (a rate applies and ValorIss is written) when the service is taxable: exigível,
# or taxable with its collection suspended by a court or an administrative process (ABRASF 2.04,
# ExigibilidadeISS 6 and 7: the tax exists, its exigibility is suspended; NFS-e Nacional
# tribISSQN 1 "operação tributável" with tpSusp 1/2). Non-incidence, exemption, export and
# immunity (2-5) owe no ISS: no rate applies.
ISS_DUE: frozenset[Exigibilidade] = frozenset(
    {
        Exigibilidade.EXIGIVEL,
        Exigibilidade.SUSPENSA_DECISAO_JUDICIAL,
        Exigibilidade.SUSPENSA_PROCESSO_ADMINISTRATIVO,
    }
)

# A suspended exigibility names the court or administrative process that suspends it
# (ABRASF 2.04 NumeroProcesso, "obrigatório se ExigibilidadeISS = 6 ou 7"; NFS-e Nacional
# exigSusp/nProcesso).
NEEDS_PROCESSO: frozenset[Exigibilidade] = frozenset(
    {Exigibilidade.SUSPENSA_DECISAO_JUDICIAL, Exigibilidade.SUSPENSA_PROCESSO_ADMINISTRATIVO}
)


EXIGIBILIDADE_LABELS: dict[int, str] = {
    1: "exigível",
    2: "não incidência",
    3: "isenção",
    4: "exportação",
    5: "imunidade",
    6: "suspensa por decisão judicial",
    7: "suspensa por processo administrativo",
}


def iss_due(exigibilidade: int) -> bool:
    return Exigibilidade(exigibilidade) in ISS_DUE


class RegimeEspecialTributacao(IntEnum):
    """ABRASF 2.04 tsRegimeEspecialTributacao (1-6)."""

    MICROEMPRESA_MUNICIPAL = 1
    ESTIMATIVA = 2
    SOCIEDADE_DE_PROFISSIONAIS = 3
    COOPERATIVA = 4
    MEI = 5
    ME_EPP = 6


class ResponsavelRetencao(IntEnum):
    """Who withholds the ISS when IssRetido = 1: ABRASF 2.04 tsResponsavelRetencao."""

    TOMADOR = 1
    INTERMEDIARIO = 2


REGIME_LABELS: dict[int, str] = {
    1: "microempresa municipal",
    2: "estimativa",
    3: "sociedade de profissionais",
    4: "cooperativa",
    5: "MEI",
    6: "ME/EPP",
}

RESPONSAVEL_BY_NAME: dict[str, ResponsavelRetencao] = {
    "tomador": ResponsavelRetencao.TOMADOR,
    "intermediario": ResponsavelRetencao.INTERMEDIARIO,
}

# --- the ISS rate ---------------------------------------------------------------------------

# LC 116/2003 art. 8º, II: the maximum rate is 5%.
ALIQUOTA_MAX = Decimal("5.00")
# LC 116/2003 art. 8-A (LC 157/2016): the minimum rate is 2%...
ALIQUOTA_MIN = Decimal("2.00")
# ...except for the services of subitems 7.02, 7.05 and 16.01 (art. 8-A, §1), which may be
# taxed below it.
ITEMS_WITHOUT_RATE_FLOOR: frozenset[str] = frozenset({"07.02", "07.05", "16.01"})


def aliquota_bounds(item: str) -> tuple[Decimal, Decimal]:
    """The rates (percent) allowed for a service item when ISS is due."""
    floor = ZERO if item in ITEMS_WITHOUT_RATE_FLOOR else ALIQUOTA_MIN
    return floor, ALIQUOTA_MAX


def aliquota_range_problem(aliquota: Decimal, item: str) -> str | None:
    low, high = aliquota_bounds(item)
    if low <= aliquota <= high:
        return None
    why = (
        f" (item {item} is exempt from the 2% floor, LC 116 art. 8-A §1)"
        if item in ITEMS_WITHOUT_RATE_FLOOR
        else " (LC 116 art. 8 and 8-A)"
    )
    return f"must be between {low} and {high} percent for item {item}{why}"


# --- amounts --------------------------------------------------------------------------------


def round_cents(value: Decimal) -> Decimal:
    """Cents, rounded as ABNT NBR 5891 says (a trailing 5 goes to the even digit: the
    rounding ISS.NET documents for ABRASF providers); NFS-e Nacional accepts vISSQN within
    R$ 0.01 of vBC x pAliq (rule E1289), which this always is."""
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Retencoes:
    """Federal and other withholdings (ABRASF 2.04 ValorPis, ValorCofins, ValorInss, ValorIr,
    ValorCsll, OutrasRetencoes; NFS-e Nacional tribFed vRetCP/vRetIRRF/vRetCSLL, piscofins)."""

    pis: Decimal = ZERO
    cofins: Decimal = ZERO
    inss: Decimal = ZERO
    ir: Decimal = ZERO
    csll: Decimal = ZERO
    outras: Decimal = ZERO

    def total(self) -> Decimal:
        return self.pis + self.cofins + self.inss + self.ir + self.csll + self.outras


@dataclass(frozen=True, slots=True)
class Valores:
    """The amounts of one invoice: what the client sent and what the law computes from it."""

    valor_servicos: Decimal
    valor_deducoes: Decimal
    desconto_incondicionado: Decimal
    desconto_condicionado: Decimal
    retencoes: Retencoes
    aliquota: Decimal | None
    iss_retido: bool
    base_calculo: Decimal
    valor_iss: Decimal | None
    valor_iss_retido: Decimal
    valor_liquido: Decimal


def base_calculo(
    valor_servicos: Decimal, valor_deducoes: Decimal, desconto_incondicionado: Decimal
) -> Decimal:
    """ABRASF 2.04 manual, BaseCalculo = ValorServicos - ValorDeducoes - DescontoIncondicionado
    (NFS-e Nacional: vBC = vServ - vDescIncond - vDR, the same)."""
    return valor_servicos - valor_deducoes - desconto_incondicionado


def valor_iss(base: Decimal, aliquota: Decimal) -> Decimal:
    """ValorIss = BaseCalculo x Aliquota (ABRASF 2.04; NFS-e Nacional vISSQN = vBC x pAliq),
    the rate in percent, rounded to cents (round_cents)."""
    return round_cents(base * aliquota / HUNDRED)


def valor_liquido(
    *,
    valor_servicos: Decimal,
    retencoes: Retencoes,
    valor_iss_retido: Decimal,
    desconto_incondicionado: Decimal,
    desconto_condicionado: Decimal,
) -> Decimal:
    """ABRASF 2.04 manual: ValorLiquidoNfse = ValorServicos - ValorPis - ValorCofins -
    ValorInss - ValorIr - ValorCsll - OutrasRetencoes - ValorIssRetido - DescontoIncondicionado
    - DescontoCondicionado. NFS-e Nacional vLiq = vServ - vDescIncond - vDescCond - (vRetCP +
    vRetIRRF + vRetCSLL) - vPIS/vCOFINS retained - vISSQN retained: the same terms."""
    return (
        valor_servicos
        - retencoes.total()
        - valor_iss_retido
        - desconto_incondicionado
        - desconto_condicionado
    )


def compute_valores(  # noqa: PLR0913 - keyword-only: the inputs of the law's formulas
    *,
    valor_servicos: Decimal,
    valor_deducoes: Decimal,
    desconto_incondicionado: Decimal,
    desconto_condicionado: Decimal,
    retencoes: Retencoes,
    aliquota: Decimal | None,
    iss_retido: bool,
) -> Valores:
    """Every computed amount of an invoice; `aliquota` is None when no ISS is due."""
    base = base_calculo(valor_servicos, valor_deducoes, desconto_incondicionado)
    iss = valor_iss(base, aliquota) if aliquota is not None else None
    retido = iss if (iss_retido and iss is not None) else ZERO
    return Valores(
        valor_servicos=valor_servicos,
        valor_deducoes=valor_deducoes,
        desconto_incondicionado=desconto_incondicionado,
        desconto_condicionado=desconto_condicionado,
        retencoes=retencoes,
        aliquota=aliquota,
        iss_retido=iss_retido,
        base_calculo=base,
        valor_iss=iss,
        valor_iss_retido=retido,
        valor_liquido=valor_liquido(
            valor_servicos=valor_servicos,
            retencoes=retencoes,
            valor_iss_retido=retido,
            desconto_incondicionado=desconto_incondicionado,
            desconto_condicionado=desconto_condicionado,
        ),
    )


def amounts_problems(valores: Valores) -> list[tuple[str, str]]:
    """Cross-field rules on the amounts, as (field, message) pairs.

    - The deductions and the unconditioned discount do not exceed the service value: the base
      de cálculo is never negative (ABRASF 2.04 tsValor has minInclusive 0; NFS-e Nacional
      vBC >= 0).
    - The retentions plus the discounts do not exceed the service value: the net value is never
      negative (ABRASF 2.04 ValorLiquidoNfse is a tsValor, minInclusive 0; NFS-e Nacional vLiq).
    """
    problems: list[tuple[str, str]] = []
    total = valores.valor_servicos
    if valores.valor_deducoes > total:
        problems.append(("valorDeducoes", f"must not exceed the total {total}"))
    elif valores.base_calculo < 0:
        problems.append(
            (
                "descontoIncondicionado",
                f"plus valorDeducoes must not exceed the total {total}",
            )
        )
    if valores.valor_liquido < 0:
        problems.append(
            (
                "retencoes",
                "the retentions, the ISS withheld and the discounts must not exceed the total "
                f"{total} (the net value would be {valores.valor_liquido})",
            )
        )
    return problems
