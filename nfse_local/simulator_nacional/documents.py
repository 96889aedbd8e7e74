"""The documents of the simulator: what it reads from a DPS, the chave de acesso it makes, and
the NFS-e it issues (NFSe_v1.01.xsd, the DPS embedded, infNFSe signed).

The chave de acesso (50 digits; infNFSe@Id is "NFS" + the chave) follows ANEXO I (leiaute
DPS/NFS-e v1.00 of 2025-12-26, NFSe/infNFSe/Id) and TSIdNFSe of tiposSimples_v1.01.xsd:
cMun (7, the emitente's municipality) + ambGer (1: 2 = Sefin Nacional) + tpInsc (1: 1 CPF,
2 CNPJ) + inscrição federal (14, CPF zero-padded) + nNFSe (13) + AAMM of issue (4) + código
numérico (9, random) + DV (1). The DV is modulus 11 with weights 2..9 from the right (0 when
the remainder is 0 or 1), as in the NF-e's chave; the Anexo does not spell it out, and it
matches the DV of chaves issued by the SEFIN that public projects quote.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

from lxml import etree

from nfse_local.simulator_nacional.xml import NFSE_NS, nfse_path, nfse_tag

BRT: Final = timezone(timedelta(hours=-3))
AMB_GER_SEFIN: Final = "2"  # ANEXO I, NFSe/infNFSe/ambGer: 2 - Sefin Nacional NFS-e
VERSAO_APLICATIVO: Final = "SimSefinNacional_1.0"  # TSVerAplic: at most 20 characters
_CPF_LENGTH: Final = 11

# IBGE code of each federative unit, the first two digits of a municipality code.
_UF_BY_IBGE_PREFIX: Final[dict[str, str]] = {
    "11": "RO", "12": "AC", "13": "AM", "14": "RR", "15": "PA", "16": "AP", "17": "TO",
    "21": "MA", "22": "PI", "23": "CE", "24": "RN", "25": "PB", "26": "PE", "27": "AL",
    "28": "SE", "29": "BA",
    "31": "MG", "32": "ES", "33": "RJ", "35": "SP",
    "41": "PR", "42": "SC", "43": "RS",
    "50": "MS", "51": "MT", "52": "GO", "53": "DF",
}  # fmt: skip


@dataclass(frozen=True)
class DpsFacts:
    """What the simulator reads from an XSD-valid DPS."""

    id: str
    tp_amb: str
    serie: str
    n_dps: int
    c_loc_emi: str
    tp_emit: str
    inscricao: str  # the emitente's CNPJ or CPF
    x_desc_serv: str

    def expected_id(self) -> str:
        """The Id the DPS must carry: "DPS" + cLocEmi + tpInsc + inscrição + série + nDPS
        (ANEXO I, rule E0004)."""
        tipo = "1" if len(self.inscricao) == _CPF_LENGTH else "2"
        inscricao, serie = self.inscricao.zfill(14), self.serie.zfill(5)
        return f"DPS{self.c_loc_emi}{tipo}{inscricao}{serie}{self.n_dps:015d}"


def _text(inf: etree._Element, path: str) -> str:
    return (inf.findtext(nfse_path(path)) or "").strip()


def dps_facts(document: etree._Element) -> DpsFacts:
    """The facts of an XSD-valid DPS; the emitente is the prestador, tomador or intermediário
    tpEmit names (1, 2, 3)."""
    inf = document.find(nfse_tag("infDPS"))
    assert inf is not None  # the XSD requires it
    tp_emit = _text(inf, "tpEmit")
    who = {"2": "toma", "3": "interm"}.get(tp_emit, "prest")
    inscricao = _text(inf, f"{who}/CNPJ") or _text(inf, f"{who}/CPF")
    return DpsFacts(
        id=inf.get("Id", ""),
        tp_amb=_text(inf, "tpAmb"),
        serie=_text(inf, "serie"),
        n_dps=int(_text(inf, "nDPS") or 0),
        c_loc_emi=_text(inf, "cLocEmi"),
        tp_emit=tp_emit,
        inscricao=inscricao,
        x_desc_serv=_text(inf, "serv/cServ/xDescServ"),
    )


def chave_dv(first_49: str) -> int:
    """The check digit of a chave: modulus 11, weights 2..9 from the right."""
    total, weight = 0, 2
    for digit in reversed(first_49):
        total += int(digit) * weight
        weight = 2 if weight == 9 else weight + 1
    remainder = total % 11
    return 0 if remainder < 2 else 11 - remainder


def chave_acesso(c_mun: str, inscricao: str, n_nfse: int, issued_at: datetime) -> str:
    """A new 50-digit chave de acesso (the layout in the module docstring)."""
    tipo = "1" if len(inscricao) == _CPF_LENGTH else "2"
    codigo = f"{secrets.randbelow(10**9):09d}"
    body = f"{c_mun}{AMB_GER_SEFIN}{tipo}{inscricao.zfill(14)}{n_nfse:013d}{issued_at:%y%m}{codigo}"
    return body + str(chave_dv(body))


def uf_of_ibge(code: str) -> str:
    return _UF_BY_IBGE_PREFIX.get(code[:2], "SP")


def _decimal(value: str | None) -> Decimal:
    try:
        return Decimal((value or "0").strip())
    except InvalidOperation:
        return Decimal(0)


def _leaf(parent: etree._Element, local: str, text: str) -> etree._Element:
    node = etree.SubElement(parent, nfse_tag(local))
    node.text = text
    return node


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):.2f}"


def _valores(parent: etree._Element, inf: etree._Element) -> None:
    """The NFS-e's valores, with the simulator's own arithmetic (ANEXO I, NFSe/infNFSe/valores):
    vBC = vServ - descIncond - vDR; vISSQN = vBC x pAliq, half-even to the cent; vLiq = vServ -
    both discounts - federal withholdings - the ISSQN when withheld (tpRetISSQN 2 or 3)."""

    def amount(path: str) -> Decimal:
        return _decimal(inf.findtext(nfse_path(f"valores/{path}")))

    serv = amount("vServPrest/vServ")
    incond = amount("vDescCondIncond/vDescIncond")
    cond = amount("vDescCondIncond/vDescCond")
    base = serv - incond - amount("vDedRed/vDR")
    aliquota_text = inf.findtext(nfse_path("valores/trib/tribMun/pAliq"))
    retido = (inf.findtext(nfse_path("valores/trib/tribMun/tpRetISSQN")) or "1") in ("2", "3")
    valores = etree.SubElement(parent, nfse_tag("valores"))
    iss = Decimal(0)
    if aliquota_text:
        aliquota = _decimal(aliquota_text)
        iss = (base * aliquota / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        _leaf(valores, "vBC", _money(base))
        _leaf(valores, "pAliqAplic", f"{aliquota:.2f}")
        _leaf(valores, "vISSQN", _money(iss))
    federal = sum(
        (amount(f"trib/tribFed/{name}") for name in ("vRetCP", "vRetIRRF", "vRetCSLL")),
        Decimal(0),
    )
    withheld = federal + (iss if retido else Decimal(0))
    if withheld:
        _leaf(valores, "vTotalRet", _money(withheld))
    _leaf(valores, "vLiq", _money(max(serv - incond - cond - withheld, Decimal(0))))


def build_nfse(  # noqa: PLR0913 - the facts the SEFIN fills in
    dps: etree._Element,
    facts: DpsFacts,
    *,
    chave: str,
    n_nfse: int,
    n_dfse: int,
    issued_at: datetime,
) -> etree._Element:
    """The NFSe (unsigned) the SEFIN issues for `dps`: infNFSe Id "NFS" + chave, the DPS
    embedded as it was sent."""
    inf_dps = dps.find(nfse_tag("infDPS"))
    assert inf_dps is not None
    c_loc_prest = _text(inf_dps, "serv/locPrest/cLocPrestacao") or facts.c_loc_emi
    nsmap: Any = {None: NFSE_NS}
    root = etree.Element(nfse_tag("NFSe"), nsmap=nsmap, versao="1.01")
    inf = etree.SubElement(root, nfse_tag("infNFSe"), Id=f"NFS{chave}")
    _leaf(inf, "xLocEmi", f"Municipio {facts.c_loc_emi}")
    _leaf(inf, "xLocPrestacao", f"Municipio {c_loc_prest}")
    _leaf(inf, "nNFSe", str(n_nfse))
    _leaf(inf, "cLocIncid", c_loc_prest)
    _leaf(inf, "xLocIncid", f"Municipio {c_loc_prest}")
    _leaf(inf, "xTribNac", f"Servico {_text(inf_dps, 'serv/cServ/cTribNac')}")
    _leaf(inf, "verAplic", VERSAO_APLICATIVO)
    _leaf(inf, "ambGer", AMB_GER_SEFIN)
    _leaf(inf, "tpEmis", "1")  # ANEXO I: NFS-e issued by the Sistema Nacional are tpEmis 1
    _leaf(inf, "procEmi", "1")  # 1 - issued by the contribuinte's application (API)
    _leaf(inf, "cStat", "100")  # 100 - NFS-e gerada
    _leaf(inf, "dhProc", issued_at.isoformat())
    _leaf(inf, "nDFSe", str(n_dfse))
    emit = etree.SubElement(inf, nfse_tag("emit"))
    _leaf(emit, "CPF" if len(facts.inscricao) == _CPF_LENGTH else "CNPJ", facts.inscricao)
    _leaf(emit, "xNome", f"EMITENTE {facts.inscricao}")
    ender = etree.SubElement(emit, nfse_tag("enderNac"))
    _leaf(ender, "xLgr", "Rua Simulada")
    _leaf(ender, "nro", "1")
    _leaf(ender, "xBairro", "Centro")
    _leaf(ender, "cMun", facts.c_loc_emi)
    _leaf(ender, "UF", uf_of_ibge(facts.c_loc_emi))
    _leaf(ender, "CEP", "01001000")
    _valores(inf, inf_dps)
    inf.append(copy.deepcopy(dps))
    return root


def now_brt() -> datetime:
    return datetime.now(BRT).replace(microsecond=0)
