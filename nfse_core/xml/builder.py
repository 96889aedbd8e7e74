"""Builds the ABRASF 2.04 `GerarNfseEnvio` RPS document from a validated invoice request.

Elements are written in the XSD's sequence order (tcInfDeclaracaoPrestacaoServico and the types
under it); validate_rps_document (nfse_core.xml.validate) is the check that the order holds.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from lxml import etree

from nfse_core.domain.fiscal import Valores
from nfse_core.domain.models import Endereco, Intermediario, InvoiceRequest, Tomador
from nfse_core.domain.rps import RpsIdentity
from nfse_core.xml.schema import NFSE_NS, nfse_path

_NSMAP: dict[str | None, str] = {None: NFSE_NS}
_CENT = Decimal("0.01")
# tsSimNao / tsResponsavelRetencao / tsStatusRps / tsExigibilidadeISS codes.
_SIM = "1"
_NAO = "2"
_STATUS_NORMAL = "1"
_CPF_LENGTH = 11
# The Id is referenced by the XMLDSig signature, so it must also be a valid xsd:ID (an NCName):
# the "rps" prefix makes it start with a letter, and the invoice id may only add NCName
# characters. tsIdTag allows at most 255 characters.
_ID_PREFIX = "rps"
_INVOICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,252}")


# Qualified names are computed once: building runs on every POST.
_GERAR_NFSE_ENVIO = nfse_path("GerarNfseEnvio")
_RPS = nfse_path("Rps")
_INF_DECLARACAO = nfse_path("InfDeclaracaoPrestacaoServico")
_IDENTIFICACAO_RPS = nfse_path("IdentificacaoRps")
_NUMERO = nfse_path("Numero")
_SERIE = nfse_path("Serie")
_TIPO = nfse_path("Tipo")
_DATA_EMISSAO = nfse_path("DataEmissao")
_STATUS = nfse_path("Status")
_COMPETENCIA = nfse_path("Competencia")
_SERVICO = nfse_path("Servico")
_VALORES = nfse_path("Valores")
_VALOR_SERVICOS = nfse_path("ValorServicos")
_ALIQUOTA = nfse_path("Aliquota")
_ISS_RETIDO = nfse_path("IssRetido")
_RESPONSAVEL_RETENCAO = nfse_path("ResponsavelRetencao")
_ITEM_LISTA_SERVICO = nfse_path("ItemListaServico")
_CODIGO_TRIBUTACAO_MUNICIPIO = nfse_path("CodigoTributacaoMunicipio")
_DISCRIMINACAO = nfse_path("Discriminacao")
_CODIGO_MUNICIPIO = nfse_path("CodigoMunicipio")
_EXIGIBILIDADE_ISS = nfse_path("ExigibilidadeISS")
_MUNICIPIO_INCIDENCIA = nfse_path("MunicipioIncidencia")
_PRESTADOR = nfse_path("Prestador")
_CPF_CNPJ = nfse_path("CpfCnpj")
_CPF = nfse_path("Cpf")
_CNPJ = nfse_path("Cnpj")
_INSCRICAO_MUNICIPAL = nfse_path("InscricaoMunicipal")
_TOMADOR_SERVICO = nfse_path("TomadorServico")
_IDENTIFICACAO_TOMADOR = nfse_path("IdentificacaoTomador")
_RAZAO_SOCIAL = nfse_path("RazaoSocial")
_ENDERECO = nfse_path("Endereco")
_COMPLEMENTO = nfse_path("Complemento")
_BAIRRO = nfse_path("Bairro")
_UF = nfse_path("Uf")
_CEP = nfse_path("Cep")
_CONTATO = nfse_path("Contato")
_EMAIL = nfse_path("Email")
_VALOR_DEDUCOES = nfse_path("ValorDeducoes")
_VALOR_PIS = nfse_path("ValorPis")
_VALOR_COFINS = nfse_path("ValorCofins")
_VALOR_INSS = nfse_path("ValorInss")
_VALOR_IR = nfse_path("ValorIr")
_VALOR_CSLL = nfse_path("ValorCsll")
_OUTRAS_RETENCOES = nfse_path("OutrasRetencoes")
_VALOR_ISS = nfse_path("ValorIss")
_DESCONTO_INCONDICIONADO = nfse_path("DescontoIncondicionado")
_DESCONTO_CONDICIONADO = nfse_path("DescontoCondicionado")
_CODIGO_CNAE = nfse_path("CodigoCnae")
_CODIGO_NBS = nfse_path("CodigoNbs")
_CODIGO_PAIS = nfse_path("CodigoPais")
_NUMERO_PROCESSO = nfse_path("NumeroProcesso")
_NIF_TOMADOR = nfse_path("NifTomador")
_ENDERECO_EXTERIOR = nfse_path("EnderecoExterior")
_ENDERECO_COMPLETO_EXTERIOR = nfse_path("EnderecoCompletoExterior")
_INTERMEDIARIO = nfse_path("Intermediario")
_IDENTIFICACAO_INTERMEDIARIO = nfse_path("IdentificacaoIntermediario")
_REGIME_ESPECIAL_TRIBUTACAO = nfse_path("RegimeEspecialTributacao")
_OPTANTE_SIMPLES_NACIONAL = nfse_path("OptanteSimplesNacional")
_INCENTIVO_FISCAL = nfse_path("IncentivoFiscal")

_sub = etree.SubElement


def _leaf(parent: etree._Element, tag: str, text: str) -> None:
    _sub(parent, tag).text = text


def rps_element_id(invoice_id: str) -> str:
    """The `Id` of InfDeclaracaoPrestacaoServico: one per invoice, valid as xsd:ID and tsIdTag."""
    if _INVOICE_ID.fullmatch(invoice_id) is None:
        raise ValueError(f"invoice id {invoice_id!r} cannot form an XML Id")
    return _ID_PREFIX + invoice_id


def format_money(value: Decimal) -> str:
    """`value` with exactly two decimals ("1500.00", "0.10"), for tsValor and tsAliquota.

    An amount with non-zero digits past the cents is written as it is, not rounded: a fiscal
    amount is never changed silently, and the XSD check then rejects it with the element's path.
    """
    try:
        cents = value.quantize(_CENT)
    except InvalidOperation:  # NaN, infinity, more digits than the context holds
        return format(value, "f")
    if cents != value:
        return format(value, "f")
    return format(cents.copy_abs() if cents.is_zero() else cents, "f")


def _cpf_cnpj(parent: etree._Element, document: str) -> None:
    _leaf(_sub(parent, _CPF_CNPJ), _CPF if len(document) == _CPF_LENGTH else _CNPJ, document)


def _endereco(parent: etree._Element, endereco: Endereco) -> None:
    node = _sub(parent, _ENDERECO)
    _leaf(node, _ENDERECO, endereco.logradouro)
    _leaf(node, _NUMERO, endereco.numero)
    if endereco.complemento is not None:
        _leaf(node, _COMPLEMENTO, endereco.complemento)
    _leaf(node, _BAIRRO, endereco.bairro)
    _leaf(node, _CODIGO_MUNICIPIO, endereco.codigo_municipio)
    _leaf(node, _UF, endereco.uf)
    _leaf(node, _CEP, endereco.cep)


def _sim_nao(flag: bool) -> str:
    return _SIM if flag else _NAO


def _tomador(parent: etree._Element, tomador: Tomador) -> None:
    node = _sub(parent, _TOMADOR_SERVICO)
    if tomador.cpf_cnpj is not None:
        _cpf_cnpj(_sub(node, _IDENTIFICACAO_TOMADOR), tomador.cpf_cnpj)
    if tomador.nif is not None:
        _leaf(node, _NIF_TOMADOR, tomador.nif)
    # RazaoSocial is required by tcDadosTomador; when the request has none it is left out and
    # the XSD check reports it rather than the builder inventing a name.
    if tomador.razao_social is not None:
        _leaf(node, _RAZAO_SOCIAL, tomador.razao_social)
    if tomador.endereco is not None:
        _endereco(node, tomador.endereco)
    elif tomador.endereco_exterior is not None:
        exterior = _sub(node, _ENDERECO_EXTERIOR)
        _leaf(exterior, _CODIGO_PAIS, tomador.endereco_exterior.codigo_pais)
        _leaf(exterior, _ENDERECO_COMPLETO_EXTERIOR, tomador.endereco_exterior.endereco_completo)
    if tomador.email is not None:
        _leaf(_sub(node, _CONTATO), _EMAIL, tomador.email)


def _intermediario(parent: etree._Element, intermediario: Intermediario) -> None:
    node = _sub(parent, _INTERMEDIARIO)
    _cpf_cnpj(_sub(node, _IDENTIFICACAO_INTERMEDIARIO), intermediario.cpf_cnpj)
    _leaf(node, _RAZAO_SOCIAL, intermediario.razao_social)
    _leaf(node, _CODIGO_MUNICIPIO, intermediario.codigo_municipio)


def _optional_amount(parent: etree._Element, tag: str, value: Decimal) -> None:
    """An optional tsValor: written when it is not zero (absent reads as zero)."""
    if value:
        _leaf(parent, tag, format_money(value))


def _valores(parent: etree._Element, valores: Valores) -> None:
    """tcValoresDeclaracaoServico, in its sequence; ValorIss and Aliquota only when ISS is
    due (fiscal.ISS_DUE)."""
    node = _sub(parent, _VALORES)
    _leaf(node, _VALOR_SERVICOS, format_money(valores.valor_servicos))
    _optional_amount(node, _VALOR_DEDUCOES, valores.valor_deducoes)
    retencoes = valores.retencoes
    for tag, value in (
        (_VALOR_PIS, retencoes.pis),
        (_VALOR_COFINS, retencoes.cofins),
        (_VALOR_INSS, retencoes.inss),
        (_VALOR_IR, retencoes.ir),
        (_VALOR_CSLL, retencoes.csll),
        (_OUTRAS_RETENCOES, retencoes.outras),
    ):
        _optional_amount(node, tag, value)
    if valores.valor_iss is not None and valores.aliquota is not None:
        _leaf(node, _VALOR_ISS, format_money(valores.valor_iss))
        _leaf(node, _ALIQUOTA, format_money(valores.aliquota))
    _optional_amount(node, _DESCONTO_INCONDICIONADO, valores.desconto_incondicionado)
    _optional_amount(node, _DESCONTO_CONDICIONADO, valores.desconto_condicionado)


def _servico(parent: etree._Element, request: InvoiceRequest) -> None:
    """tcDadosServico, in its sequence."""
    servico = _sub(parent, _SERVICO)
    _valores(servico, request.valores)
    _leaf(servico, _ISS_RETIDO, _sim_nao(request.iss_retido))
    if request.responsavel is not None:
        _leaf(servico, _RESPONSAVEL_RETENCAO, str(int(request.responsavel)))
    _leaf(servico, _ITEM_LISTA_SERVICO, request.item_lista_servico)
    if request.codigo_cnae is not None:
        _leaf(servico, _CODIGO_CNAE, request.codigo_cnae)
    if request.codigo_tributacao_municipio is not None:
        _leaf(servico, _CODIGO_TRIBUTACAO_MUNICIPIO, request.codigo_tributacao_municipio)
    if request.codigo_nbs is not None:
        _leaf(servico, _CODIGO_NBS, request.codigo_nbs)
    _leaf(servico, _DISCRIMINACAO, request.discriminacao)
    _leaf(servico, _CODIGO_MUNICIPIO, request.municipio)
    if request.codigo_pais is not None:
        _leaf(servico, _CODIGO_PAIS, request.codigo_pais)
    _leaf(servico, _EXIGIBILIDADE_ISS, str(request.exigibilidade_iss))
    if request.incidencia is not None:
        _leaf(servico, _MUNICIPIO_INCIDENCIA, request.incidencia)
    if request.numero_processo is not None:
        _leaf(servico, _NUMERO_PROCESSO, request.numero_processo)


def build_gerar_nfse_envio(
    request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, emitted_on: date
) -> etree._Element:
    """The unsigned `GerarNfseEnvio` for one RPS, in the ABRASF namespace (default, no prefix)."""
    # lxml-stubs type nsmap without the None key that declares the default namespace.
    root = etree.Element(_GERAR_NFSE_ENVIO, nsmap=_NSMAP)  # type: ignore[arg-type]
    inf = _sub(_sub(root, _RPS), _INF_DECLARACAO, Id=rps_element_id(invoice_id))

    inf_rps = _sub(inf, _RPS)
    identificacao = _sub(inf_rps, _IDENTIFICACAO_RPS)
    _leaf(identificacao, _NUMERO, str(rps.numero))
    _leaf(identificacao, _SERIE, rps.serie)
    _leaf(identificacao, _TIPO, str(rps.tipo))
    _leaf(inf_rps, _DATA_EMISSAO, emitted_on.isoformat())
    _leaf(inf_rps, _STATUS, _STATUS_NORMAL)

    _leaf(inf, _COMPETENCIA, request.competencia.isoformat())

    _servico(inf, request)

    prestador = _sub(inf, _PRESTADOR)
    _leaf(_sub(prestador, _CPF_CNPJ), _CNPJ, request.cnpj)
    if request.inscricao_municipal is not None:
        _leaf(prestador, _INSCRICAO_MUNICIPAL, request.inscricao_municipal)

    if request.tomador is not None:
        _tomador(inf, request.tomador)
    if request.intermediario is not None:
        _intermediario(inf, request.intermediario)
    if request.regime_especial_tributacao is not None:
        _leaf(inf, _REGIME_ESPECIAL_TRIBUTACAO, str(request.regime_especial_tributacao))
    _leaf(inf, _OPTANTE_SIMPLES_NACIONAL, _sim_nao(request.optante_simples_nacional))
    _leaf(inf, _INCENTIVO_FISCAL, _sim_nao(request.incentivo_fiscal))
    return root


def to_bytes(element: etree._Element) -> bytes:
    """The document as stored and sent: UTF-8 with an XML declaration, no added whitespace."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=True)
