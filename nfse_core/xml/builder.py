"""Builds the ABRASF 2.x `GerarNfseEnvio` RPS document of one provider family's DocumentForm.

Elements are written in the XSD's sequence order (tcInfDeclaracaoPrestacaoServico and the types
under it); validate_rps_document (nfse_core.xml.validate) is the check that the order holds.

The versions share one sequence; what differs between them (nfselib-legacy's XSDs, see
nfse_core.xml.schema for which file serves each version):

- the tomador is `Tomador` in 2.01, 2.02 and 2.03 and `TomadorServico` in 2.04
  (tcInfDeclaracaoPrestacaoServico);
- NifTomador exists from 2.03, EnderecoExterior only in 2.04 (tcDadosTomador); CodigoNbs from
  2.03 (tcDadosServico); Intermediario/CodigoMunicipio from 2.03 (tcDadosIntermediario);
- tsItemListaServico is any text of 1 to 5 characters in 2.01 and 2.02 (so "0107" is valid
  there) and an enumeration of the dotted subitems in 2.03 and 2.04;
- tsAliquota has 4 decimals (totalDigits 6) in 2.01 and 2.02, 2 decimals (totalDigits 4) in
  2.03 and 2.04; tsEndereco holds 125 characters and tsNumeroEndereco 10 before 2.04 (255, 60);
- ValorIss, Aliquota, MunicipioIncidencia, NumeroProcesso, CodigoPais have the same place in all.

The builder writes what the request holds in the version's names and order; a field the version
has no place for is written anyway (and the XSD check fails): `unsupported_fields` names those
fields first, so that the caller refuses them before any number is taken.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache

from lxml import etree

from nfse_core.domain.errors import FieldError
from nfse_core.domain.fiscal import Valores
from nfse_core.domain.models import Endereco, Intermediario, InvoiceRequest, Tomador
from nfse_core.domain.rps import RpsIdentity
from nfse_core.xml.forms import PLAIN_2_04, AbrasfVersion, DocumentForm
from nfse_core.xml.schema import xsd_facts

_CENT = Decimal("0.01")
_TEN_THOUSANDTH = Decimal("0.0001")
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

# Every element name the builder writes.
_NAMES = (
    "GerarNfseEnvio", "Rps", "InfDeclaracaoPrestacaoServico", "IdentificacaoRps", "Numero",
    "Serie", "Tipo", "DataEmissao", "Status", "Competencia", "Servico", "Valores", "ValorServicos",
    "Aliquota", "IssRetido", "ResponsavelRetencao", "ItemListaServico",
    "CodigoTributacaoMunicipio", "Discriminacao", "CodigoMunicipio", "ExigibilidadeISS",
    "MunicipioIncidencia", "Prestador", "CpfCnpj", "Cpf", "Cnpj", "InscricaoMunicipal", "Tomador",
    "TomadorServico", "IdentificacaoTomador", "RazaoSocial", "Endereco", "Complemento", "Bairro",
    "Uf", "Cep", "Contato", "Email", "ValorDeducoes", "ValorPis", "ValorCofins", "ValorInss",
    "ValorIr", "ValorCsll", "OutrasRetencoes", "ValorIss", "DescontoIncondicionado",
    "DescontoCondicionado", "CodigoCnae", "CodigoNbs", "CodigoPais", "NumeroProcesso",
    "NifTomador", "EnderecoExterior", "EnderecoCompletoExterior", "Intermediario",
    "IdentificacaoIntermediario", "RegimeEspecialTributacao", "OptanteSimplesNacional",
    "IncentivoFiscal",
)  # fmt: skip

# The complex type the request's fields are placed under, in every version's XSD.
_INF_TYPE = "tcInfDeclaracaoPrestacaoServico"


@cache
def _tags(namespace: str) -> dict[str, str]:
    """The qualified (Clark) name of every element, in `namespace`: computed once per
    namespace, as building runs on every POST."""
    return {name: f"{{{namespace}}}{name}" for name in _NAMES}


def tomador_element(version: AbrasfVersion) -> str:
    """The element of the tomador in tcInfDeclaracaoPrestacaoServico: `TomadorServico` in 2.04,
    `Tomador` in 2.01-2.03."""
    return "TomadorServico" if version == "2.04" else "Tomador"


_sub = etree.SubElement


def _leaf(parent: etree._Element, tag: str, text: str) -> None:
    _sub(parent, tag).text = text


def rps_element_id(invoice_id: str) -> str:
    """The `Id` of InfDeclaracaoPrestacaoServico: one per invoice, valid as xsd:ID and tsIdTag."""
    if _INVOICE_ID.fullmatch(invoice_id) is None:
        raise ValueError(f"invoice id {invoice_id!r} cannot form an XML Id")
    return _ID_PREFIX + invoice_id


def _exact(value: Decimal, step: Decimal) -> str:
    """`value` with the decimals of `step`, unless that would change it (then as it is)."""
    try:
        quantized = value.quantize(step)
    except InvalidOperation:  # NaN, infinity, more digits than the context holds
        return format(value, "f")
    if quantized != value:
        return format(value, "f")
    return format(quantized.copy_abs() if quantized.is_zero() else quantized, "f")


def format_money(value: Decimal) -> str:
    """`value` with exactly two decimals ("1500.00", "0.10"), for tsValor and tsAliquota.

    An amount with non-zero digits past the cents is written as it is, not rounded: a fiscal
    amount is never changed silently, and the XSD check then rejects it with the element's path.
    """
    return _exact(value, _CENT)


def format_aliquota(rate: Decimal, form: DocumentForm = PLAIN_2_04) -> str:
    """The ISS rate (a percent, as the request holds it: Decimal("5.00")) as the form writes it:
    percent "5.00", percent4 "5.0000", fraction "0.05" (at least two decimals, as many as the
    rate needs: 2.5% is "0.025"), fraction4 "0.0500". Never rounded."""
    match form.aliquota_format:
        case "percent":
            return format_money(rate)
        case "percent4":
            return _exact(rate, _TEN_THOUSANDTH)
        case "fraction4":
            return _exact(rate.scaleb(-2), _TEN_THOUSANDTH)
        case "fraction":
            fraction = rate.scaleb(-2)
            if not fraction.is_finite():
                return format(fraction, "f")
            exponent = fraction.normalize().as_tuple().exponent
            assert isinstance(exponent, int)
            return _exact(fraction, _CENT if exponent >= -2 else Decimal(1).scaleb(exponent))


def format_item(item: str, form: DocumentForm = PLAIN_2_04) -> str:
    """ItemListaServico as the form writes it: "01.07" (dotted) or "0107" (digits)."""
    return item.replace(".", "") if form.item_format == "digits" else item


def format_data_emissao(day: date, form: DocumentForm = PLAIN_2_04) -> str:
    """DataEmissao of the RPS: "2026-12-02" (date) or "2026-12-02T00:00:00" (datetime, no
    offset)."""
    text = day.isoformat()
    return f"{text}T00:00:00" if form.date_format == "datetime" else text


def _sim_nao(flag: bool) -> str:
    return _SIM if flag else _NAO


class _Writer:
    """Writes one document of one form (its names in the form's namespace)."""

    __slots__ = ("form", "t")

    def __init__(self, form: DocumentForm) -> None:
        self.form = form
        self.t = _tags(form.namespace)

    def cpf_cnpj(self, parent: etree._Element, document: str) -> None:
        t = self.t
        _leaf(
            _sub(parent, t["CpfCnpj"]),
            t["Cpf"] if len(document) == _CPF_LENGTH else t["Cnpj"],
            document,
        )

    def endereco(self, parent: etree._Element, endereco: Endereco) -> None:
        t = self.t
        node = _sub(parent, t["Endereco"])
        _leaf(node, t["Endereco"], endereco.logradouro)
        _leaf(node, t["Numero"], endereco.numero)
        if endereco.complemento is not None:
            _leaf(node, t["Complemento"], endereco.complemento)
        _leaf(node, t["Bairro"], endereco.bairro)
        _leaf(node, t["CodigoMunicipio"], endereco.codigo_municipio)
        _leaf(node, t["Uf"], endereco.uf)
        _leaf(node, t["Cep"], endereco.cep)

    def tomador(self, parent: etree._Element, tomador: Tomador) -> None:
        t = self.t
        node = _sub(parent, t[tomador_element(self.form.version)])
        if tomador.cpf_cnpj is not None:
            self.cpf_cnpj(_sub(node, t["IdentificacaoTomador"]), tomador.cpf_cnpj)
        if tomador.nif is not None:
            _leaf(node, t["NifTomador"], tomador.nif)
        # RazaoSocial is required by the 2.04 tcDadosTomador; when the request has none it is
        # left out and the XSD check reports it rather than the builder inventing a name.
        if tomador.razao_social is not None:
            _leaf(node, t["RazaoSocial"], tomador.razao_social)
        if tomador.endereco is not None:
            self.endereco(node, tomador.endereco)
        elif tomador.endereco_exterior is not None:
            exterior = _sub(node, t["EnderecoExterior"])
            _leaf(exterior, t["CodigoPais"], tomador.endereco_exterior.codigo_pais)
            _leaf(
                exterior,
                t["EnderecoCompletoExterior"],
                tomador.endereco_exterior.endereco_completo,
            )
        if tomador.email is not None:
            _leaf(_sub(node, t["Contato"]), t["Email"], tomador.email)

    def intermediario(self, parent: etree._Element, intermediario: Intermediario) -> None:
        t = self.t
        node = _sub(parent, t["Intermediario"])
        self.cpf_cnpj(_sub(node, t["IdentificacaoIntermediario"]), intermediario.cpf_cnpj)
        _leaf(node, t["RazaoSocial"], intermediario.razao_social)
        _leaf(node, t["CodigoMunicipio"], intermediario.codigo_municipio)

    def valores(self, parent: etree._Element, valores: Valores) -> None:
        """tcValoresDeclaracaoServico, in its sequence; ValorIss and Aliquota only when ISS is
        due (fiscal.ISS_DUE)."""
        t = self.t
        node = _sub(parent, t["Valores"])
        _leaf(node, t["ValorServicos"], format_money(valores.valor_servicos))
        for tag, value in _optional_amounts(valores)[:7]:
            if value:
                _leaf(node, t[tag], format_money(value))
        if valores.valor_iss is not None and valores.aliquota is not None:
            _leaf(node, t["ValorIss"], format_money(valores.valor_iss))
            _leaf(node, t["Aliquota"], format_aliquota(valores.aliquota, self.form))
        for tag, value in _optional_amounts(valores)[7:]:
            if value:
                _leaf(node, t[tag], format_money(value))

    def servico(self, parent: etree._Element, request: InvoiceRequest) -> None:
        """tcDadosServico, in its sequence."""
        t = self.t
        servico = _sub(parent, t["Servico"])
        self.valores(servico, request.valores)
        _leaf(servico, t["IssRetido"], _sim_nao(request.iss_retido))
        if request.responsavel is not None:
            _leaf(servico, t["ResponsavelRetencao"], str(int(request.responsavel)))
        _leaf(servico, t["ItemListaServico"], format_item(request.item_lista_servico, self.form))
        if request.codigo_cnae is not None:
            _leaf(servico, t["CodigoCnae"], request.codigo_cnae)
        if request.codigo_tributacao_municipio is not None:
            _leaf(servico, t["CodigoTributacaoMunicipio"], request.codigo_tributacao_municipio)
        if request.codigo_nbs is not None:
            _leaf(servico, t["CodigoNbs"], request.codigo_nbs)
        _leaf(servico, t["Discriminacao"], request.discriminacao)
        _leaf(servico, t["CodigoMunicipio"], request.municipio)
        if request.codigo_pais is not None:
            _leaf(servico, t["CodigoPais"], request.codigo_pais)
        _leaf(servico, t["ExigibilidadeISS"], str(request.exigibilidade_iss))
        if request.incidencia is not None:
            _leaf(servico, t["MunicipioIncidencia"], request.incidencia)
        if request.numero_processo is not None:
            _leaf(servico, t["NumeroProcesso"], request.numero_processo)

    def document(
        self, request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, emitted_on: date
    ) -> etree._Element:
        t = self.t
        # lxml-stubs type nsmap without the None key that declares the default namespace.
        root = etree.Element(t["GerarNfseEnvio"], nsmap={None: self.form.namespace})  # type: ignore[dict-item]
        inf = _sub(
            _sub(root, t["Rps"]), t["InfDeclaracaoPrestacaoServico"], Id=rps_element_id(invoice_id)
        )

        inf_rps = _sub(inf, t["Rps"])
        identificacao = _sub(inf_rps, t["IdentificacaoRps"])
        _leaf(identificacao, t["Numero"], str(rps.numero))
        _leaf(identificacao, t["Serie"], rps.serie)
        _leaf(identificacao, t["Tipo"], str(rps.tipo))
        _leaf(inf_rps, t["DataEmissao"], format_data_emissao(emitted_on, self.form))
        _leaf(inf_rps, t["Status"], _STATUS_NORMAL)

        _leaf(inf, t["Competencia"], request.competencia.isoformat())

        self.servico(inf, request)

        prestador = _sub(inf, t["Prestador"])
        _leaf(_sub(prestador, t["CpfCnpj"]), t["Cnpj"], request.cnpj)
        if request.inscricao_municipal is not None:
            _leaf(prestador, t["InscricaoMunicipal"], request.inscricao_municipal)

        if request.tomador is not None:
            self.tomador(inf, request.tomador)
        if request.intermediario is not None:
            self.intermediario(inf, request.intermediario)
        if request.regime_especial_tributacao is not None:
            _leaf(inf, t["RegimeEspecialTributacao"], str(request.regime_especial_tributacao))
        _leaf(inf, t["OptanteSimplesNacional"], _sim_nao(request.optante_simples_nacional))
        _leaf(inf, t["IncentivoFiscal"], _sim_nao(request.incentivo_fiscal))
        return root


def _optional_amounts(valores: Valores) -> list[tuple[str, Decimal]]:
    """The optional tsValor of tcValoresDeclaracaoServico in its sequence, ValorIss/Aliquota
    falling between the 7th and the 8th; each written when it is not zero (absent reads as
    zero)."""
    retencoes = valores.retencoes
    return [
        ("ValorDeducoes", valores.valor_deducoes),
        ("ValorPis", retencoes.pis),
        ("ValorCofins", retencoes.cofins),
        ("ValorInss", retencoes.inss),
        ("ValorIr", retencoes.ir),
        ("ValorCsll", retencoes.csll),
        ("OutrasRetencoes", retencoes.outras),
        ("DescontoIncondicionado", valores.desconto_incondicionado),
        ("DescontoCondicionado", valores.desconto_condicionado),
    ]


def build_gerar_nfse_envio(
    request: InvoiceRequest,
    rps: RpsIdentity,
    invoice_id: str,
    emitted_on: date,
    form: DocumentForm = PLAIN_2_04,
) -> etree._Element:
    """The unsigned `GerarNfseEnvio` for one RPS in `form`: its version's elements, in its
    namespace (default, no prefix), its value formats."""
    return _Writer(form).document(request, rps, invoice_id, emitted_on)


def to_bytes(element: etree._Element) -> bytes:
    """The document as stored and sent: UTF-8 with an XML declaration, no added whitespace."""
    return etree.tostring(element, encoding="UTF-8", xml_declaration=True)


# --------------------------------------------------------------------------- unsupported fields

_AMOUNT_FIELDS = {
    "ValorDeducoes": "valorDeducoes",
    "ValorPis": "retencoes.pis",
    "ValorCofins": "retencoes.cofins",
    "ValorInss": "retencoes.inss",
    "ValorIr": "retencoes.ir",
    "ValorCsll": "retencoes.csll",
    "OutrasRetencoes": "retencoes.outras",
    "DescontoIncondicionado": "descontoIncondicionado",
    "DescontoCondicionado": "descontoCondicionado",
}

# (request field as the API names it, element path under tcInfDeclaracaoPrestacaoServico,
# the text written there or None for an element that holds other elements).
_Placed = tuple[str, tuple[str, ...], str | None]


def _placed_fields(request: InvoiceRequest, form: DocumentForm) -> Iterator[_Placed]:
    """Every request field the builder writes, where and as what: the same choices as
    _Writer, read back as data."""
    valores = request.valores
    servico = ("Servico",)
    money = ("Servico", "Valores")
    yield "total", (*money, "ValorServicos"), format_money(valores.valor_servicos)
    for tag, value in _optional_amounts(valores):
        if value:
            yield _AMOUNT_FIELDS[tag], (*money, tag), format_money(value)
    if valores.valor_iss is not None and valores.aliquota is not None:
        yield "aliquota", (*money, "Aliquota"), format_aliquota(valores.aliquota, form)
    if request.responsavel is not None:
        yield (
            "responsavelRetencao",
            (*servico, "ResponsavelRetencao"),
            str(int(request.responsavel)),
        )
    yield (
        "itemListaServico",
        (*servico, "ItemListaServico"),
        format_item(request.item_lista_servico, form),
    )
    for field, tag, text in (
        ("codigoCnae", "CodigoCnae", request.codigo_cnae),
        (
            "codigoTributacaoMunicipio",
            "CodigoTributacaoMunicipio",
            request.codigo_tributacao_municipio,
        ),
        ("codigoNbs", "CodigoNbs", request.codigo_nbs),
        ("discriminacao", "Discriminacao", request.discriminacao),
        ("municipio", "CodigoMunicipio", request.municipio),
        ("codigoPais", "CodigoPais", request.codigo_pais),
        ("exigibilidadeIss", "ExigibilidadeISS", str(request.exigibilidade_iss)),
        ("municipioIncidencia", "MunicipioIncidencia", request.incidencia),
        ("numeroProcesso", "NumeroProcesso", request.numero_processo),
    ):
        if text is not None:
            yield field, (*servico, tag), text
    if request.inscricao_municipal is not None:
        yield "inscricaoMunicipal", ("Prestador", "InscricaoMunicipal"), request.inscricao_municipal
    if request.tomador is not None:
        yield from _placed_tomador(request.tomador, tomador_element(form.version))
    if request.intermediario is not None:
        intermediario = request.intermediario
        ident = (
            "Intermediario",
            "IdentificacaoIntermediario",
            "CpfCnpj",
            _cpf_or_cnpj(intermediario.cpf_cnpj),
        )
        yield "intermediario.cpfCnpj", ident, intermediario.cpf_cnpj
        yield (
            "intermediario.razaoSocial",
            ("Intermediario", "RazaoSocial"),
            intermediario.razao_social,
        )
        yield (
            "intermediario.codigoMunicipio",
            ("Intermediario", "CodigoMunicipio"),
            intermediario.codigo_municipio,
        )
    if request.regime_especial_tributacao is not None:
        yield (
            "regimeEspecialTributacao",
            ("RegimeEspecialTributacao",),
            str(request.regime_especial_tributacao),
        )
    yield (
        "optanteSimplesNacional",
        ("OptanteSimplesNacional",),
        _sim_nao(request.optante_simples_nacional),
    )
    yield "incentivoFiscal", ("IncentivoFiscal",), _sim_nao(request.incentivo_fiscal)


def _cpf_or_cnpj(document: str) -> str:
    return "Cpf" if len(document) == _CPF_LENGTH else "Cnpj"


def _placed_tomador(tomador: Tomador, element: str) -> Iterator[_Placed]:
    if tomador.cpf_cnpj is not None:
        ident = (element, "IdentificacaoTomador", "CpfCnpj", _cpf_or_cnpj(tomador.cpf_cnpj))
        yield "tomador.cpfCnpj", ident, tomador.cpf_cnpj
    if tomador.nif is not None:
        yield "tomador.nif", (element, "NifTomador"), tomador.nif
    if tomador.razao_social is not None:
        yield "tomador.razaoSocial", (element, "RazaoSocial"), tomador.razao_social
    if tomador.endereco is not None:
        endereco = tomador.endereco
        for field, tag, text in (
            ("logradouro", "Endereco", endereco.logradouro),
            ("numero", "Numero", endereco.numero),
            ("complemento", "Complemento", endereco.complemento),
            ("bairro", "Bairro", endereco.bairro),
            ("codigoMunicipio", "CodigoMunicipio", endereco.codigo_municipio),
            ("uf", "Uf", endereco.uf),
            ("cep", "Cep", endereco.cep),
        ):
            if text is not None:
                yield f"tomador.endereco.{field}", (element, "Endereco", tag), text
    elif tomador.endereco_exterior is not None:
        exterior = tomador.endereco_exterior
        yield "tomador.enderecoExterior", (element, "EnderecoExterior"), None
        yield (
            "tomador.enderecoExterior.codigoPais",
            (element, "EnderecoExterior", "CodigoPais"),
            exterior.codigo_pais,
        )
        yield (
            "tomador.enderecoExterior.enderecoCompleto",
            (element, "EnderecoExterior", "EnderecoCompletoExterior"),
            exterior.endereco_completo,
        )
    if tomador.email is not None:
        yield "tomador.email", (element, "Contato", "Email"), tomador.email


def unsupported_fields(
    request: InvoiceRequest, form: DocumentForm = PLAIN_2_04
) -> list[FieldError]:
    """Every field of a valid request the ABRASF document of `form` has no place for, each named
    as the API names it: a field whose element the version's XSD lacks (tomador.nif before 2.03,
    tomador.enderecoExterior before 2.04, codigoNbs and intermediario.codigoMunicipio before
    2.03), a value its XSD type cannot hold as the form writes it (an LC 116 item the
    tsItemListaServico enumeration lacks or any item written as digits where it is an
    enumeration, an address longer than tsEndereco, a rate as a fraction with more decimals than
    tsAliquota), and the IBS/CBS, which no ABRASF 2.x document carries.

    The facts are read from the XSD `schema_for(form)` compiles (nfse_core.xml.schema), so a
    request this passes builds a document that validates (tests/unit/test_xml_forms.py shows it
    for any valid request); the caller refuses the fields with a 422 before any number is taken.
    """
    facts = xsd_facts(form.version, form.namespace)
    standard = f"ABRASF {form.version}"
    where = f"the standard of the provider of municipality {request.municipio}"
    problems: list[FieldError] = []
    missing: list[tuple[str, ...]] = []
    for field, path, text in _placed_fields(request, form):
        if any(path[: len(gone)] == gone for gone in missing):
            continue  # its group is already named
        facets = facts.element(_INF_TYPE, path)
        if facets is None:
            missing.append(path)
            problems.append(
                FieldError(field, f"{standard}, {where}, has no place for it (no {'/'.join(path)})")
            )
            continue
        problem = None if text is None else facets.problem(text)
        if problem is None:
            continue
        if field == "itemListaServico" and facets.enumeration is not None:
            message = (
                f"item {request.item_lista_servico} (written {text}) is not in the service list "
                f"of {standard}, {where}"
            )
        else:
            message = f"{standard}, {where}, cannot carry it: {problem}"
        problems.append(FieldError(field, message))
    if request.ibs_cbs is not None:
        problems.append(
            FieldError(
                "ibsCbs",
                f"{standard}, {where}, has no IBS/CBS group (NFS-e Nacional's DPS has)",
            )
        )
    return problems
