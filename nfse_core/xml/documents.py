"""The other requests an ABRASF client sends, in a family's form: the consult of an RPS and the
cancel of an NFS-e.

Both have the same elements in every ABRASF 2.0x XSD (nfse_core.xml.schema lists the files):
ConsultarNfseRpsEnvio is IdentificacaoRps (Numero, Serie, Tipo) and Prestador (CpfCnpj,
InscricaoMunicipal: tcIdentificacaoPrestador in 2.01-2.03, tcIdentificacaoPessoaEmpresa in
2.04); CancelarNfseEnvio is Pedido/InfPedidoCancelamento@Id with IdentificacaoNfse (Numero,
CpfCnpj, InscricaoMunicipal, CodigoMunicipio) and CodigoCancelamento (optional before 2.04,
required in 2.04: always written). Only the namespace changes with the form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from nfse_core.xml.forms import PLAIN_2_04, DocumentForm
from nfse_core.xml.schema import qualified_path

if TYPE_CHECKING:
    from nfse_core.providers.port import RpsKey

_CPF_LENGTH = 11
_CODIGOS_CANCELAMENTO = range(1, 6)


def _cpf_cnpj(parent: etree._Element, namespace: str, document: str) -> None:
    holder = etree.SubElement(parent, qualified_path(namespace, "CpfCnpj"))
    tag = "Cpf" if len(document) == _CPF_LENGTH else "Cnpj"
    etree.SubElement(holder, qualified_path(namespace, tag)).text = document


def build_consultar_nfse_rps_envio(rps: RpsKey, form: DocumentForm = PLAIN_2_04) -> etree._Element:
    """ConsultarNfseRpsEnvio (unsigned in ABRASF 2.0x) in the form's namespace (default, no
    prefix)."""
    ns = form.namespace

    def q(name: str) -> str:
        return qualified_path(ns, name)

    root = etree.Element(q("ConsultarNfseRpsEnvio"), nsmap={None: ns})  # type: ignore[dict-item]
    ident = etree.SubElement(root, q("IdentificacaoRps"))
    etree.SubElement(ident, q("Numero")).text = str(rps.numero)
    etree.SubElement(ident, q("Serie")).text = rps.serie
    etree.SubElement(ident, q("Tipo")).text = str(rps.tipo)
    prestador = etree.SubElement(root, q("Prestador"))
    _cpf_cnpj(prestador, ns, rps.cnpj)
    if rps.inscricao_municipal:
        etree.SubElement(prestador, q("InscricaoMunicipal")).text = rps.inscricao_municipal
    return root


def build_cancelar_nfse_envio(  # noqa: PLR0913 - keyword-only: the fields of the Pedido
    *,
    numero_nfse: str,
    cnpj: str,
    inscricao_municipal: str | None,
    codigo_municipio: str,
    codigo_cancelamento: int,
    pedido_id: str,
    form: DocumentForm = PLAIN_2_04,
) -> etree._Element:
    """CancelarNfseEnvio in the form's namespace, ready for XmlSigner (the signature references
    InfPedidoCancelamento@Id).

    codigo_cancelamento (tsCodigoCancelamentoNfse, the same 1-5 in every 2.0x XSD): 1 erro na
    emissão, 2 serviço não prestado, 3 erro de assinatura, 4 duplicidade da nota, 5 erro de
    processamento.
    """
    if codigo_cancelamento not in _CODIGOS_CANCELAMENTO:
        raise ValueError("codigo_cancelamento must be 1..5")
    ns = form.namespace

    def q(name: str) -> str:
        return qualified_path(ns, name)

    root = etree.Element(q("CancelarNfseEnvio"), nsmap={None: ns})  # type: ignore[dict-item]
    pedido = etree.SubElement(root, q("Pedido"))
    inf = etree.SubElement(pedido, q("InfPedidoCancelamento"), Id=pedido_id)
    ident = etree.SubElement(inf, q("IdentificacaoNfse"))
    etree.SubElement(ident, q("Numero")).text = numero_nfse
    _cpf_cnpj(ident, ns, cnpj)
    if inscricao_municipal:
        etree.SubElement(ident, q("InscricaoMunicipal")).text = inscricao_municipal
    etree.SubElement(ident, q("CodigoMunicipio")).text = codigo_municipio
    etree.SubElement(inf, q("CodigoCancelamento")).text = str(codigo_cancelamento)
    return root
