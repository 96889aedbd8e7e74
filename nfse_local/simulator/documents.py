"""The ABRASF 2.04 documents the simulator writes: element helpers, the NFS-e it issues, its
cancellation, and the RPS key it files them under."""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

from lxml import etree

from nfse_local.simulator.messages import Message
from nfse_local.simulator.state import BRT, RpsKeyTuple, StoredNfse

NFSE_NS: Final = "http://www.abrasf.org.br/nfse.xsd"


def nfse_tag(local: str) -> str:
    """The Clark name of `local` in the ABRASF namespace."""
    return f"{{{NFSE_NS}}}{local}"


def nfse_path(path: str) -> str:
    """A slash-separated path of ABRASF elements, in Clark notation."""
    return "/".join(nfse_tag(step) for step in path.split("/"))


def any_path(path: str) -> str:
    """A slash-separated path whose steps match their local name in any namespace."""
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


def leaf(parent: etree._Element, local: str, text: str) -> etree._Element:
    """A new ABRASF child of `parent` holding `text`."""
    node = etree.SubElement(parent, nfse_tag(local))
    node.text = text
    return node


def message_list(parent: etree._Element, messages: list[Message]) -> None:
    """Append a ListaMensagemRetorno holding `messages` to `parent`."""
    lista = etree.SubElement(parent, nfse_tag("ListaMensagemRetorno"))
    for codigo, mensagem, correcao in messages:
        item = etree.SubElement(lista, nfse_tag("MensagemRetorno"))
        leaf(item, "Codigo", codigo)
        leaf(item, "Mensagem", mensagem)
        if correcao:
            leaf(item, "Correcao", correcao)


def new_document(local: str) -> etree._Element:
    """A root element in the ABRASF namespace, declared as the default namespace."""
    nsmap: Any = {None: NFSE_NS}
    return etree.Element(nfse_tag(local), nsmap=nsmap)


# IBGE code of each federative unit, the first two digits of a municipality code.
_UF_BY_IBGE_PREFIX: Final[dict[str, str]] = {
    "11": "RO", "12": "AC", "13": "AM", "14": "RR", "15": "PA", "16": "AP", "17": "TO",
    "21": "MA", "22": "PI", "23": "CE", "24": "RN", "25": "PB", "26": "PE", "27": "AL",
    "28": "SE", "29": "BA",
    "31": "MG", "32": "ES", "33": "RJ", "35": "SP",
    "41": "PR", "42": "SC", "43": "RS",
    "50": "MS", "51": "MT", "52": "GO", "53": "DF",
}  # fmt: skip


def uf_of_ibge(code: str) -> str | None:
    """The UF of a 7-digit IBGE municipality code, or None when the prefix is no UF."""
    code = code.strip()
    if len(code) != 7 or not code.isdigit():
        return None
    return _UF_BY_IBGE_PREFIX.get(code[:2])


def rps_key(rps: etree._Element) -> tuple[RpsKeyTuple, str]:
    """(the key the NFS-e of `rps` is filed under, the prestador's CNPJ)."""
    inf = rps.find(nfse_tag("InfDeclaracaoPrestacaoServico"))
    assert inf is not None
    cnpj = (inf.findtext(any_path("Prestador/CpfCnpj/Cnpj")) or "").strip()
    ident = inf.find(any_path("Rps/IdentificacaoRps"))
    if ident is None:  # optional in the XSD; the simulator keys on the Id then
        return (cnpj, 0, inf.get("Id", ""), 0), cnpj
    return identified_key(cnpj, ident), cnpj


def identified_key(cnpj: str, ident: etree._Element) -> RpsKeyTuple:
    """The key of the RPS an IdentificacaoRps names for the prestador `cnpj`."""
    return (
        cnpj,
        int(ident.findtext(nfse_tag("Numero")) or 0),
        (ident.findtext(nfse_tag("Serie")) or "").strip(),
        int(ident.findtext(nfse_tag("Tipo")) or 0),
    )


def build_nfse(numero: int, rps: etree._Element) -> StoredNfse:
    """The NFS-e number `numero` issued for `rps`, with its CompNfse."""
    inf_rps = rps.find(nfse_tag("InfDeclaracaoPrestacaoServico"))
    assert inf_rps is not None
    cnpj = (inf_rps.findtext(any_path("Prestador/CpfCnpj/Cnpj")) or "").strip()
    im = inf_rps.findtext(any_path("Prestador/InscricaoMunicipal"))
    municipio = (inf_rps.findtext(any_path("Servico/CodigoMunicipio")) or "3550308").strip()
    uf = uf_of_ibge(municipio) or "SP"
    issued_at = datetime.now(BRT).replace(microsecond=0)
    codigo = secrets.token_hex(4).upper()[:8]

    comp = new_document("CompNfse")
    nfse = etree.SubElement(comp, nfse_tag("Nfse"), versao="2.04")
    inf = etree.SubElement(nfse, nfse_tag("InfNfse"), Id=f"nfse{numero}")
    leaf(inf, "Numero", str(numero))
    leaf(inf, "CodigoVerificacao", codigo)
    leaf(inf, "DataEmissao", issued_at.isoformat())
    valores = etree.SubElement(inf, nfse_tag("ValoresNfse"))
    computed = provider_values(inf_rps)
    leaf(valores, "BaseCalculo", f"{computed.base:.2f}")
    if computed.aliquota is not None and computed.iss is not None:
        leaf(valores, "Aliquota", f"{computed.aliquota:.2f}")
        leaf(valores, "ValorIss", f"{computed.iss:.2f}")
    leaf(valores, "ValorLiquidoNfse", f"{computed.liquido:.2f}")
    prestador = etree.SubElement(inf, nfse_tag("PrestadorServico"))
    leaf(prestador, "RazaoSocial", f"EMPRESA {cnpj}")
    endereco = etree.SubElement(prestador, nfse_tag("Endereco"))
    leaf(endereco, "Endereco", "Rua Simulada")
    leaf(endereco, "Numero", "1")
    leaf(endereco, "Bairro", "Centro")
    leaf(endereco, "CodigoMunicipio", municipio)
    leaf(endereco, "Uf", uf)
    leaf(endereco, "Cep", "01001000")
    orgao = etree.SubElement(inf, nfse_tag("OrgaoGerador"))
    leaf(orgao, "CodigoMunicipio", municipio)
    leaf(orgao, "Uf", uf)
    declaracao = etree.SubElement(inf, nfse_tag("DeclaracaoPrestacaoServico"))
    for child in rps:
        declaracao.append(copy.deepcopy(child))
    return StoredNfse(
        numero=numero,
        codigo_verificacao=codigo,
        issued_at=issued_at,
        comp_nfse=comp,
        cnpj=cnpj,
        inscricao_municipal=im.strip() if im else None,
        codigo_municipio=municipio,
    )


@dataclass(frozen=True)
class ProviderValues:
    """What a provider computes from an RPS's Valores (its own arithmetic, not the client's)."""

    base: Decimal
    aliquota: Decimal | None
    iss: Decimal | None
    liquido: Decimal
    sent_iss: Decimal | None


_RETENCOES = ("ValorPis", "ValorCofins", "ValorInss", "ValorIr", "ValorCsll", "OutrasRetencoes")


def provider_values(inf_rps: etree._Element) -> ProviderValues:
    """Base, ISS and net value as an ABRASF provider computes them: base = services - deductions
    - unconditioned discount; ISS = base x rate, half-even to the cent (ABNT NBR 5891, the rule
    ISS.NET documents); net = services - retentions - ISS withheld - both discounts."""

    def amount(name: str) -> Decimal:
        return _decimal(inf_rps.findtext(any_path(f"Servico/Valores/{name}")))

    base = amount("ValorServicos") - amount("ValorDeducoes") - amount("DescontoIncondicionado")
    aliquota_text = inf_rps.findtext(any_path("Servico/Valores/Aliquota"))
    aliquota = _decimal(aliquota_text) if aliquota_text else None
    iss = None
    if aliquota is not None:
        iss = (base * aliquota / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    retido = inf_rps.findtext(any_path("Servico/IssRetido")) == "1"
    withheld = iss if iss is not None and retido else Decimal(0)
    liquido = (
        amount("ValorServicos")
        - sum((amount(name) for name in _RETENCOES), Decimal(0))
        - withheld
        - amount("DescontoIncondicionado")
        - amount("DescontoCondicionado")
    )
    sent = inf_rps.findtext(any_path("Servico/Valores/ValorIss"))
    return ProviderValues(base, aliquota, iss, liquido, _decimal(sent) if sent else None)


def values_consistent(rps: etree._Element) -> bool:
    """Whether the ISS the RPS states is the provider's, within R$ 0.01 (the tolerance NFS-e
    Nacional's rule E1289 allows), and neither base nor net value is negative."""
    inf_rps = rps.find(nfse_tag("InfDeclaracaoPrestacaoServico"))
    if inf_rps is None:
        return False
    computed = provider_values(inf_rps)
    if computed.base < 0 or computed.liquido < 0:
        return False
    if computed.sent_iss is None or computed.iss is None:
        return True
    return abs(computed.sent_iss - computed.iss) <= Decimal("0.01")


def cancelamento(pedido: etree._Element, when: datetime) -> etree._Element:
    """The NfseCancelamento confirming `pedido` at `when`."""
    node = new_document("NfseCancelamento")
    node.set("versao", "2.04")
    confirmacao = etree.SubElement(node, nfse_tag("Confirmacao"))
    confirmacao.append(copy.deepcopy(pedido))
    leaf(confirmacao, "DataHora", when.isoformat())
    return node


def _decimal(value: str | None) -> Decimal:
    """The number in `value`; zero when it holds none."""
    try:
        return Decimal((value or "0").strip())
    except InvalidOperation:
        return Decimal(0)
