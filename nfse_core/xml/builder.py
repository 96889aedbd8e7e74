"""Builds the ABRASF 2.04 `GerarNfseEnvio` RPS document from a validated invoice request.

Elements are written in the XSD's sequence order (tcInfDeclaracaoPrestacaoServico and the types
under it); validate_rps_document (nfse_core.xml.validate) is the check that the order holds.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from lxml import etree

from nfse_core.domain.models import Endereco, InvoiceRequest, Tomador
from nfse_core.domain.rps import RpsIdentity
from nfse_core.xml.schema import NFSE_NS, nfse_path

_NSMAP: dict[str | None, str] = {None: NFSE_NS}
_CENT = Decimal("0.01")
# tsSimNao / tsResponsavelRetencao / tsStatusRps / tsExigibilidadeISS codes.
_SIM = "1"
_NAO = "2"
_STATUS_NORMAL = "1"
_RESPONSAVEL_TOMADOR = "1"
_EXIGIVEL = "1"
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


def _tomador(parent: etree._Element, tomador: Tomador) -> None:
    node = _sub(parent, _TOMADOR_SERVICO)
    _cpf_cnpj(_sub(node, _IDENTIFICACAO_TOMADOR), tomador.cpf_cnpj)
    # RazaoSocial is required by tcDadosTomador; when the request has none it is left out and
    # the XSD check reports it rather than the builder inventing a name.
    if tomador.razao_social is not None:
        _leaf(node, _RAZAO_SOCIAL, tomador.razao_social)
    if tomador.endereco is not None:
        _endereco(node, tomador.endereco)
    if tomador.email is not None:
        _leaf(_sub(node, _CONTATO), _EMAIL, tomador.email)


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

    servico = _sub(inf, _SERVICO)
    valores = _sub(servico, _VALORES)
    _leaf(valores, _VALOR_SERVICOS, format_money(request.total))
    _leaf(valores, _ALIQUOTA, format_money(request.aliquota))
    if request.iss_retido:
        _leaf(servico, _ISS_RETIDO, _SIM)
        _leaf(servico, _RESPONSAVEL_RETENCAO, _RESPONSAVEL_TOMADOR)
    else:
        _leaf(servico, _ISS_RETIDO, _NAO)
    _leaf(servico, _ITEM_LISTA_SERVICO, request.item_lista_servico)
    if request.codigo_tributacao_municipio is not None:
        _leaf(servico, _CODIGO_TRIBUTACAO_MUNICIPIO, request.codigo_tributacao_municipio)
    _leaf(servico, _DISCRIMINACAO, request.discriminacao)
    _leaf(servico, _CODIGO_MUNICIPIO, request.municipio)
    _leaf(servico, _EXIGIBILIDADE_ISS, _EXIGIVEL)
    _leaf(servico, _MUNICIPIO_INCIDENCIA, request.municipio)

    prestador = _sub(inf, _PRESTADOR)
    _leaf(_sub(prestador, _CPF_CNPJ), _CNPJ, request.cnpj)
    if request.inscricao_municipal is not None:
        _leaf(prestador, _INSCRICAO_MUNICIPAL, request.inscricao_municipal)

    if request.tomador is not None:
        _tomador(inf, request.tomador)

    _leaf(inf, _OPTANTE_SIMPLES_NACIONAL, _NAO)
    _leaf(inf, _INCENTIVO_FISCAL, _NAO)
    return root


def to_bytes(element: etree._Element) -> bytes:
    """The document as stored and sent: UTF-8 with an XML declaration, no added whitespace."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=True)
