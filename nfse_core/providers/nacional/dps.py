"""Builds the NFS-e Nacional DPS (Declaração de Prestação de Serviço, leiaute 1.01) of one invoice.

Elements are written in the sequence of the XSD (DPS_v1.01.xsd and tiposComplexos_v1.01.xsd of
nfelib 3.2, TCInfDPS and the types under it); the DPS XSD check (nfse_core.providers.nacional
.document) is what proves the order holds. Codes and rules below cite the leiaute: the
documentation annotations of those XSDs (tiposSimples_v1.01.xsd: TSOpSimpNac, TSRegEspTrib,
TSTribISSQN, TSTipoRetISSQN, TSOpExigSuspensa, TSTipoIndTotTrib...).

What the DPS cannot carry of a request is refused by `unsupported_fields` before any number is
consumed; `build_dps` assumes it was called and writes everything else.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from typing import Final

from lxml import etree

from nfse_core.domain.fiscal import Exigibilidade, RegimeEspecialTributacao, ResponsavelRetencao
from nfse_core.domain.models import Endereco, IbsCbs, InvoiceRequest, Tomador
from nfse_core.domain.places import zone_of
from nfse_core.domain.rps import RpsIdentity
from nfse_core.providers.nacional.ids import dps_id
from nfse_core.providers.nacional.schema import LEIAUTE_VERSION, NACIONAL_NS
from nfse_core.xml.builder import format_money

# verAplic (TSVerAplic, 1-20 characters): the application that generated the DPS.
VER_APLIC: Final = "nfse-core-1"

AMBIENTE_PRODUCAO: Final = 1  # TSTipoAmbiente: 1 - Produção
AMBIENTE_HOMOLOGACAO: Final = 2  # 2 - Homologação (produção restrita)

_CPF_LENGTH = 11
# tpEmit (TSEmitenteDPS): 1 - Prestador. This platform always emits as the prestador.
_TP_EMIT_PRESTADOR = "1"

# opSimpNac (TSOpSimpNac): 1 - Não Optante; 2 - Optante MEI; 3 - Optante ME/EPP.
OP_SIMP_NAC_NAO_OPTANTE: Final = "1"
OP_SIMP_NAC_MEI: Final = "2"
OP_SIMP_NAC_ME_EPP: Final = "3"
# regApTribSN (TSRegimeApuracaoSimpNac), only for opSimpNac 3: 1 - federal and municipal taxes
# collected through the Simples Nacional (the request has no field for the sublimit cases 2, 3).
_REG_AP_TRIB_SN_SIMPLES = "1"

# regEspTrib (TSRegEspTrib): 0 Nenhum, 1 Ato Cooperado, 2 Estimativa, 3 Microempresa Municipal,
# 4 Notário ou Registrador, 5 Profissional Autônomo, 6 Sociedade de Profissionais, 9 Outros.
# The ABRASF 2.04 codes (tsRegimeEspecialTributacao) map by meaning; ABRASF's MEI (5) and ME/EPP
# (6) are not special regimes in the DPS but its Simples Nacional situation (opSimpNac 2 and 3).
REG_ESP_TRIB_NENHUM: Final = "0"
REG_ESP_TRIB: Final[dict[RegimeEspecialTributacao, str]] = {
    RegimeEspecialTributacao.MICROEMPRESA_MUNICIPAL: "3",
    RegimeEspecialTributacao.ESTIMATIVA: "2",
    RegimeEspecialTributacao.SOCIEDADE_DE_PROFISSIONAIS: "6",
    RegimeEspecialTributacao.COOPERATIVA: "1",
    RegimeEspecialTributacao.MEI: REG_ESP_TRIB_NENHUM,
    RegimeEspecialTributacao.ME_EPP: REG_ESP_TRIB_NENHUM,
}

# tribISSQN (TSTribISSQN): 1 - Operação tributável; 2 - Imunidade; 3 - Exportação de serviço;
# 4 - Não Incidência. A suspended exigibility is a taxable operation with the exigSusp group
# (TCExigSuspensa, tpSusp 1 judicial / 2 administrativo). Exemption (ABRASF 3) has no code: it
# is a municipal benefit (group BM) identified by the nBM the municipality registered in the
# system, which the request does not carry (see unsupported_fields).
TRIB_ISSQN: Final[dict[Exigibilidade, str]] = {
    Exigibilidade.EXIGIVEL: "1",
    Exigibilidade.NAO_INCIDENCIA: "4",
    Exigibilidade.EXPORTACAO: "3",
    Exigibilidade.IMUNIDADE: "2",
    Exigibilidade.SUSPENSA_DECISAO_JUDICIAL: "1",
    Exigibilidade.SUSPENSA_PROCESSO_ADMINISTRATIVO: "1",
}
TP_SUSP: Final[dict[Exigibilidade, str]] = {
    Exigibilidade.SUSPENSA_DECISAO_JUDICIAL: "1",
    Exigibilidade.SUSPENSA_PROCESSO_ADMINISTRATIVO: "2",
}

# tpRetISSQN (TSTipoRetISSQN): 1 - Não Retido; 2 - Retido pelo Tomador; 3 - Retido pelo
# Intermediário.
TP_RET_NAO_RETIDO: Final = "1"
TP_RET_ISSQN: Final[dict[ResponsavelRetencao, str]] = {
    ResponsavelRetencao.TOMADOR: "2",
    ResponsavelRetencao.INTERMEDIARIO: "3",
}

# indTotTrib (TSTipoIndTotTrib, fixed 0): no estimate of the total taxes is given (Decreto
# 8.264/2014); the one choice of TCTribTotal that needs no figure the request lacks.
_IND_TOT_TRIB = "0"

# nProcesso (TSNumProcExigSuspensa): exactly 30 digits. A process number written with the usual
# separators (CNJ "NNNNNNN-DD.AAAA.J.TR.OOOO") is reduced to its digits and zero-padded on the
# left to 30, its numeric value unchanged.
N_PROCESSO_LENGTH: Final = 30
_PROCESSO_SEPARATORS = re.compile(r"[\s./-]")

# Country codes: the request carries the BACEN code (4 digits, ABRASF tsCodigoPaisIbge); the DPS
# wants ISO 3166-1 alpha-2 (TSCodPaisISO, cPaisResult). A deliberately small table of common
# trade partners; other countries are refused by unsupported_fields rather than guessed.
# Source: "Tabela de Países" of the Banco Central do Brasil (BACEN codes, as used by NF-e cPais)
# and ISO 3166-1 alpha-2; pairs checked against the BACEN/ISO table of the public repository
# upperxcode/jxcontrollertest (lib/domain/data/paises.dart, commit 492f888f), 2026-07.
BACEN_TO_ISO: Final[dict[str, str]] = {
    "0230": "DE",
    "0639": "AR",
    "0698": "AU",
    "0728": "AT",
    "0876": "BE",
    "0973": "BO",
    "1490": "CA",
    "1589": "CL",
    "1600": "CN",
    "1694": "CO",
    "1902": "KR",
    "2321": "DK",
    "2399": "EC",
    "2445": "AE",
    "2453": "ES",
    "2496": "US",
    "2712": "FI",
    "2755": "FR",
    "3514": "HK",
    "3611": "IN",
    "3751": "IE",
    "3832": "IL",
    "3867": "IT",
    "3999": "JP",
    "4456": "LU",
    "4936": "MX",
    "5380": "NO",
    "5487": "NZ",
    "5738": "NL",
    "5860": "PY",
    "5894": "PE",
    "6033": "PL",
    "6076": "PT",
    "6289": "GB",
    "7412": "SG",
    "7560": "ZA",
    "7641": "SE",
    "7676": "CH",
    "8451": "UY",
    "8508": "VE",
}

_NSMAP: dict[str | None, str] = {None: NACIONAL_NS}


def _q(name: str) -> str:
    return f"{{{NACIONAL_NS}}}{name}"


_sub = etree.SubElement


def _leaf(parent: etree._Element, name: str, text: str) -> etree._Element:
    node = _sub(parent, _q(name))
    node.text = text
    return node


def _group(parent: etree._Element, name: str) -> etree._Element:
    return _sub(parent, _q(name))


def iso_country(bacen: str) -> str | None:
    """The ISO alpha-2 code of a BACEN country code, when the table knows it."""
    return BACEN_TO_ISO.get(bacen)


def n_processo(numero: str) -> str | None:
    """nProcesso (30 digits) of a process number, or None when it is not a number of at most 30
    digits once its separators are removed."""
    digits = _PROCESSO_SEPARATORS.sub("", numero)
    if not digits.isdigit() or len(digits) > N_PROCESSO_LENGTH:
        return None
    return digits.zfill(N_PROCESSO_LENGTH)


def op_simp_nac(request: InvoiceRequest) -> str:
    """The prestador's Simples Nacional situation: MEI and ME/EPP are Simples by definition."""
    regime = request.regime_especial_tributacao
    if regime == RegimeEspecialTributacao.MEI:
        return OP_SIMP_NAC_MEI
    if request.optante_simples_nacional or regime == RegimeEspecialTributacao.ME_EPP:
        return OP_SIMP_NAC_ME_EPP
    return OP_SIMP_NAC_NAO_OPTANTE


def reg_esp_trib(request: InvoiceRequest) -> str:
    regime = request.regime_especial_tributacao
    if regime is None:
        return REG_ESP_TRIB_NENHUM
    return REG_ESP_TRIB[RegimeEspecialTributacao(regime)]


def local_prestacao(request: InvoiceRequest) -> str:
    """cLocPrestacao: where the service was rendered. The request names a municipality of
    incidence only for the LC 116 art. 3 services taxed where they are rendered, so that is the
    place of rendering; otherwise (and for an export, rendered here) the emitting municipality."""
    return request.municipio_incidencia or request.municipio


def aliquota_informed(request: InvoiceRequest) -> Decimal | None:
    """pAliq, written only when the municipality of incidence is not the emitting one. The
    leiaute (TCTribMunicipal/pAliq) says the rate of a municipality that belongs to the Sistema
    Nacional is parametrized there and supplied by the system; the emitting municipality does
    belong (it is routed to this standard), another one may not, so its rate is informed."""
    aliquota = request.aliquota_aplicada
    if aliquota is None or request.incidencia in (None, request.municipio):
        return None
    return aliquota


def format_dh(moment: datetime) -> str:
    """TSDateTimeUTC: AAAA-MM-DDThh:mm:ss±hh:mm, seconds precision, the offset written."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("dhEmi needs an aware datetime")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}{sign}{hours:02d}:{rest:02d}"


def emission_moment(emitted_on: date, municipio: str) -> datetime:
    """dhEmi of a DPS emitted on `emitted_on`: 00:00 of that date in the municipality's zone."""
    return datetime.combine(emitted_on, time(0, 0), tzinfo=zone_of(municipio))


def _documento(parent: etree._Element, document: str) -> None:
    _leaf(parent, "CPF" if len(document) == _CPF_LENGTH else "CNPJ", document)


def _endereco_nacional(parent: etree._Element, endereco: Endereco) -> None:
    """TCEndereco with endNac: municipality and CEP, then street, number, complement, district
    (the UF follows from the IBGE code and has no element)."""
    node = _group(parent, "end")
    nac = _group(node, "endNac")
    _leaf(nac, "cMun", endereco.codigo_municipio)
    _leaf(nac, "CEP", endereco.cep)
    _leaf(node, "xLgr", endereco.logradouro)
    _leaf(node, "nro", endereco.numero)
    if endereco.complemento is not None:
        _leaf(node, "xCpl", endereco.complemento)
    _leaf(node, "xBairro", endereco.bairro)


def _prestador(parent: etree._Element, request: InvoiceRequest) -> None:
    """TCInfoPrestador. Name and address are left out: the emitting prestador is identified by
    its CNPJ and the system takes them from its registration."""
    prest = _group(parent, "prest")
    _leaf(prest, "CNPJ", request.cnpj)
    if request.inscricao_municipal is not None:
        _leaf(prest, "IM", request.inscricao_municipal)
    reg = _group(prest, "regTrib")
    simples = op_simp_nac(request)
    _leaf(reg, "opSimpNac", simples)
    if simples == OP_SIMP_NAC_ME_EPP:
        _leaf(reg, "regApTribSN", _REG_AP_TRIB_SN_SIMPLES)
    _leaf(reg, "regEspTrib", reg_esp_trib(request))


def _tomador(parent: etree._Element, tomador: Tomador) -> None:
    """TCInfoPessoa: CPF/CNPJ (or NIF abroad), name, national address, e-mail."""
    toma = _group(parent, "toma")
    if tomador.cpf_cnpj is not None:
        _documento(toma, tomador.cpf_cnpj)
    elif tomador.nif is not None:
        _leaf(toma, "NIF", tomador.nif)
    # xNome is required; a request without it is refused by unsupported_fields (and, if built
    # anyway, the XSD check reports it) rather than a name being invented here.
    if tomador.razao_social is not None:
        _leaf(toma, "xNome", tomador.razao_social)
    if tomador.endereco is not None:
        _endereco_nacional(toma, tomador.endereco)
    if tomador.email is not None:
        _leaf(toma, "email", tomador.email)


def _intermediario(parent: etree._Element, request: InvoiceRequest) -> None:
    intermediario = request.intermediario
    if intermediario is None:
        return
    interm = _group(parent, "interm")
    _documento(interm, intermediario.cpf_cnpj)
    _leaf(interm, "xNome", intermediario.razao_social)


def _servico(parent: etree._Element, request: InvoiceRequest) -> None:
    """TCServ: place of rendering and the service codes."""
    serv = _group(parent, "serv")
    _leaf(_group(serv, "locPrest"), "cLocPrestacao", local_prestacao(request))
    c_serv = _group(serv, "cServ")
    tributacao = request.tributacao_nacional
    # cTribNac is required; unsupported_fields refuses a request without one.
    if tributacao is not None:
        _leaf(c_serv, "cTribNac", tributacao)
    if request.codigo_tributacao_municipio is not None:
        _leaf(c_serv, "cTribMun", request.codigo_tributacao_municipio)
    _leaf(c_serv, "xDescServ", request.discriminacao)
    if request.codigo_nbs is not None:
        _leaf(c_serv, "cNBS", request.codigo_nbs)


def _amount(parent: etree._Element, name: str, value: Decimal) -> None:
    """An optional TSDec15V2, written when it is not zero (absent reads as zero)."""
    if value:
        _leaf(parent, name, format_money(value))


def _trib_municipal(parent: etree._Element, request: InvoiceRequest) -> None:
    """TCTribMunicipal, in its sequence: tribISSQN, cPaisResult, exigSusp, tpRetISSQN, pAliq."""
    exigibilidade = Exigibilidade(request.exigibilidade_iss)
    node = _group(parent, "tribMun")
    _leaf(node, "tribISSQN", TRIB_ISSQN[exigibilidade])
    if exigibilidade is Exigibilidade.EXPORTACAO and request.codigo_pais is not None:
        # Unmappable codes are refused by unsupported_fields; the BACEN code is written as is
        # otherwise so the XSD check names the element.
        _leaf(node, "cPaisResult", iso_country(request.codigo_pais) or request.codigo_pais)
    tp_susp = TP_SUSP.get(exigibilidade)
    if tp_susp is not None and request.numero_processo is not None:
        susp = _group(node, "exigSusp")
        _leaf(susp, "tpSusp", tp_susp)
        _leaf(susp, "nProcesso", n_processo(request.numero_processo) or request.numero_processo)
    responsavel = request.responsavel
    _leaf(
        node,
        "tpRetISSQN",
        TP_RET_NAO_RETIDO if responsavel is None else TP_RET_ISSQN[responsavel],
    )
    aliquota = aliquota_informed(request)
    if aliquota is not None:
        _leaf(node, "pAliq", format_money(aliquota))


def _trib_federal(parent: etree._Element, request: InvoiceRequest) -> None:
    """TCTribFederal: the withheld contribuição previdenciária (INSS), IRRF and CSLL. PIS/COFINS
    need their CST, which the request lacks (refused by unsupported_fields)."""
    retencoes = request.retencoes
    if not (retencoes.inss or retencoes.ir or retencoes.csll):
        return
    node = _group(parent, "tribFed")
    _amount(node, "vRetCP", retencoes.inss)
    _amount(node, "vRetIRRF", retencoes.ir)
    _amount(node, "vRetCSLL", retencoes.csll)


def _valores(parent: etree._Element, request: InvoiceRequest) -> None:
    """TCInfoValores: service value, discounts, deductions, taxes."""
    valores = request.valores
    node = _group(parent, "valores")
    _leaf(_group(node, "vServPrest"), "vServ", format_money(valores.valor_servicos))
    if valores.desconto_incondicionado or valores.desconto_condicionado:
        descontos = _group(node, "vDescCondIncond")
        _amount(descontos, "vDescIncond", valores.desconto_incondicionado)
        _amount(descontos, "vDescCond", valores.desconto_condicionado)
    if valores.valor_deducoes:
        _leaf(_group(node, "vDedRed"), "vDR", format_money(valores.valor_deducoes))
    trib = _group(node, "trib")
    _trib_municipal(trib, request)
    _trib_federal(trib, request)
    _leaf(_group(trib, "totTrib"), "indTotTrib", _IND_TOT_TRIB)


def build_dps(
    request: InvoiceRequest,
    rps: RpsIdentity,
    emitted_at: datetime,
    *,
    ambiente: int = AMBIENTE_HOMOLOGACAO,
) -> etree._Element:
    """The unsigned DPS of one invoice, in the NFS-e Nacional namespace (default, no prefix).

    `rps.numero` is nDPS and `rps.serie` the série (1 to 5 digits); `emitted_at` (aware) is
    dhEmi, written in the municipality's zone; `ambiente` is tpAmb (1 produção, 2 homologação).
    """
    if ambiente not in (AMBIENTE_PRODUCAO, AMBIENTE_HOMOLOGACAO):
        raise ValueError(f"tpAmb must be 1 (produção) or 2 (homologação), got {ambiente}")
    moment = emitted_at.astimezone(zone_of(request.municipio)).replace(microsecond=0)
    # lxml-stubs type nsmap without the None key that declares the default namespace.
    root = etree.Element(_q("DPS"), nsmap=_NSMAP, versao=LEIAUTE_VERSION)  # type: ignore[arg-type]
    inf = _sub(
        root,
        _q("infDPS"),
        Id=dps_id(request.municipio, request.cnpj, rps.serie, rps.numero),
    )
    _leaf(inf, "tpAmb", str(ambiente))
    _leaf(inf, "dhEmi", format_dh(moment))
    _leaf(inf, "verAplic", VER_APLIC)
    _leaf(inf, "serie", rps.serie)
    _leaf(inf, "nDPS", str(rps.numero))
    _leaf(inf, "dCompet", request.competencia.isoformat())
    _leaf(inf, "tpEmit", _TP_EMIT_PRESTADOR)
    _leaf(inf, "cLocEmi", request.municipio)
    _prestador(inf, request)
    if request.tomador is not None:
        _tomador(inf, request.tomador)
    _intermediario(inf, request)
    _servico(inf, request)
    _valores(inf, request)
    if request.ibs_cbs is not None:
        _ibs_cbs(inf, request.ibs_cbs)
    return root


# finNFSe 0: an NFS-e regular, the only value DPS 1.01 enumerates (TSRTCFinNFSe).
_FIN_NFSE_REGULAR = "0"


def _ibs_cbs(parent: etree._Element, ibs_cbs: IbsCbs) -> None:
    """The group IBSCBS of infDPS (TCRTCInfoIBSCBS), in its sequence: finNFSe, indFinal,
    cIndOp, indDest, valores/trib/gIBSCBS/{CST, cClassTrib}."""
    group = _group(parent, "IBSCBS")
    _leaf(group, "finNFSe", _FIN_NFSE_REGULAR)
    if ibs_cbs.uso_consumo_pessoal is not None:
        _leaf(group, "indFinal", "1" if ibs_cbs.uso_consumo_pessoal else "0")
    _leaf(group, "cIndOp", ibs_cbs.indicador_operacao)
    _leaf(group, "indDest", "1" if ibs_cbs.destinatario_diferente else "0")
    tributos = _group(_group(_group(group, "valores"), "trib"), "gIBSCBS")
    _leaf(tributos, "CST", ibs_cbs.cst)
    _leaf(tributos, "cClassTrib", ibs_cbs.classificacao_tributaria)


# --- what the DPS cannot carry ----------------------------------------------------------------

# TSString (xLgr, nro, xCpl, xBairro, email...): characters U+0020 to U+00FF only, no line breaks.
_TS_STRING = re.compile("[\x20-\xff]*")
_C_TRIB_MUN = re.compile("[0-9]{3}")  # TCCodTribMun


def _latin1_problem(path: str, value: str | None) -> tuple[str, str] | None:
    if value is None or _TS_STRING.fullmatch(value):
        return None
    return (
        path,
        "NFS-e Nacional accepts only characters up to U+00FF (Latin-1) here, without line breaks",
    )


def _text_problems(request: InvoiceRequest) -> list[tuple[str, str]]:
    fields: list[tuple[str, str | None]] = []
    tomador = request.tomador
    if tomador is not None:
        fields.append(("tomador.email", tomador.email))
        if tomador.endereco is not None:
            endereco = tomador.endereco
            fields += [
                ("tomador.endereco.logradouro", endereco.logradouro),
                ("tomador.endereco.numero", endereco.numero),
                ("tomador.endereco.complemento", endereco.complemento),
                ("tomador.endereco.bairro", endereco.bairro),
            ]
    found = (_latin1_problem(path, value) for path, value in fields)
    return [problem for problem in found if problem is not None]


def _tomador_problems(tomador: Tomador | None) -> list[tuple[str, str]]:
    if tomador is None:
        return []
    problems: list[tuple[str, str]] = []
    if tomador.razao_social is None:
        problems.append(("tomador.razaoSocial", "is required by NFS-e Nacional (toma/xNome)"))
    if tomador.endereco_exterior is not None:
        problems.append(
            (
                "tomador.enderecoExterior",
                "NFS-e Nacional needs a foreign address split into street, number, district, "
                "city, region and postal code (toma/end/endExt); send the tomador without it",
            )
        )
    return problems


def _tributacao_problems(request: InvoiceRequest) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    exigibilidade = Exigibilidade(request.exigibilidade_iss)
    if exigibilidade is Exigibilidade.ISENCAO:
        problems.append(
            (
                "exigibilidadeIss",
                "exemption (3) is a municipal benefit in NFS-e Nacional, identified by the "
                "number the municipality registered for it (BM/nBM), which this API does not "
                "carry yet",
            )
        )
    pais = request.codigo_pais
    if pais is not None and iso_country(pais) is None:
        problems.append(
            (
                "codigoPais",
                f"country {pais} has no ISO code in this platform's table for NFS-e Nacional "
                f"(cPaisResult); supported: {', '.join(sorted(BACEN_TO_ISO))}",
            )
        )
    processo = request.numero_processo
    if processo is not None and n_processo(processo) is None:
        problems.append(
            (
                "numeroProcesso",
                f"NFS-e Nacional takes a process number of at most {N_PROCESSO_LENGTH} digits "
                "(separators . - / allowed)",
            )
        )
    municipal = request.codigo_tributacao_municipio
    if municipal is not None and _C_TRIB_MUN.fullmatch(municipal) is None:
        problems.append(("codigoTributacaoMunicipio", "NFS-e Nacional takes 3 digits (cTribMun)"))
    return problems


def _unsupported_values(request: InvoiceRequest) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    retencoes = request.retencoes
    for name, value in (("pis", retencoes.pis), ("cofins", retencoes.cofins)):
        if value:
            problems.append(
                (
                    f"retencoes.{name}",
                    "NFS-e Nacional declares PIS/COFINS with their CST (tribFed/piscofins), "
                    "which this API does not carry yet",
                )
            )
    if retencoes.outras:
        problems.append(("retencoes.outras", "NFS-e Nacional has no element for it"))
    if request.codigo_cnae is not None:
        problems.append(
            ("codigoCnae", "NFS-e Nacional has no CNAE element; send codigoNbs instead")
        )
    if request.incentivo_fiscal:
        problems.append(
            (
                "incentivoFiscal",
                "NFS-e Nacional expresses incentives as municipal benefits (BM/nBM), which "
                "this API does not carry yet",
            )
        )
    return problems


# The DPS 1.01 types a CNPJ as 14 digits (tiposSimples TSCNPJ, pattern [0-9]{14}): the
# alphanumeric CNPJ (IN RFB 2.229/2024, from July 2026) has no place in it yet.
_NUMERIC_CNPJ = "the NFS-e Nacional DPS 1.01 takes a numeric CNPJ only (TSCNPJ: 14 digits)"


def _numeric_cnpj_problems(request: InvoiceRequest) -> list[tuple[str, str]]:
    parties = [("cnpj", request.cnpj)]
    if request.tomador is not None and request.tomador.cpf_cnpj is not None:
        parties.append(("tomador.cpfCnpj", request.tomador.cpf_cnpj))
    if request.intermediario is not None:
        parties.append(("intermediario.cpfCnpj", request.intermediario.cpf_cnpj))
    return [(field, _NUMERIC_CNPJ) for field, value in parties if not value.isdigit()]


def unsupported_fields(request: InvoiceRequest) -> list[tuple[str, str]]:
    """(field, message) for every part of a valid request the DPS cannot carry: cTribNac that
    cannot be chosen, and the fields without a DPS element or with a narrower DPS type."""
    problems: list[tuple[str, str]] = []
    tributacao_problem = request.tributacao_nacional_problem()
    if tributacao_problem is not None:
        problems.append(("codigoTributacaoNacional", tributacao_problem))
    problems += _numeric_cnpj_problems(request)
    problems += _tributacao_problems(request)
    problems += _unsupported_values(request)
    problems += _tomador_problems(request.tomador)
    problems += _text_problems(request)
    return problems
