"""Provider-side test helpers: throwaway company certificates and RPS documents.

Imported by the provider tests (`from tests.conftest_provider import ...`); tests/conftest.py
belongs to the rest of the suite.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.providers.port import RpsKey
from nfse_core.xml.builder import build_gerar_nfse_envio
from nfse_core.xml.schema import NFSE_NS
from nfse_local.certs import generate_key_and_certificate
from nfse_local.samples import invoice_body

CNPJ = "11222333000181"
OTHER_CNPJ = "11444777000161"
INSCRICAO = "12345678"
FIXTURES = Path(__file__).parent / "fixtures" / "provider"

KeyCert = tuple[rsa.RSAPrivateKey, x509.Certificate]


@cache
def company_keys() -> KeyCert:
    """The key and self-signed e-CNPJ style certificate of CNPJ (generated once per run).

    Test modules wrap it in a fixture of their own (tests/conftest.py is not ours).
    """
    return generate_key_and_certificate(CNPJ)


@cache
def other_company_keys() -> KeyCert:
    return generate_key_and_certificate(OTHER_CNPJ)


def rps_document(
    numero: int,
    *,
    discriminacao: str = "Desenvolvimento de software sob encomenda",
    cnpj: str = CNPJ,
    invoice_id: str | None = None,
    serie: str = "1",
    **fields: Any,
) -> etree._Element:
    """An unsigned, XSD-valid GerarNfseEnvio built by the project's builder (`fields` change
    the request body)."""
    request = InvoiceRequest.model_validate(
        invoice_body(cnpj, discriminacao=discriminacao, **fields)
    )
    return build_gerar_nfse_envio(
        request,
        RpsIdentity(numero=numero, serie=serie, tipo=1),
        invoice_id or f"INV{numero:06d}",
        date(2026, 11, 5),
    )


def lote_document(numeros: list[int], *, cnpj: str = CNPJ) -> etree._Element:
    """An unsigned EnviarLoteRpsSincronoEnvio holding the RPSs `numeros`."""
    ns = {None: NFSE_NS}

    def q(local: str) -> str:
        return f"{{{NFSE_NS}}}{local}"

    root = etree.Element(q("EnviarLoteRpsSincronoEnvio"), nsmap=ns)  # type: ignore[arg-type]
    lote = etree.SubElement(root, q("LoteRps"), Id=f"lote{numeros[0]}", versao="2.04")
    etree.SubElement(lote, q("NumeroLote")).text = str(numeros[0])
    prestador = etree.SubElement(lote, q("Prestador"))
    etree.SubElement(etree.SubElement(prestador, q("CpfCnpj")), q("Cnpj")).text = cnpj
    etree.SubElement(prestador, q("InscricaoMunicipal")).text = INSCRICAO
    etree.SubElement(lote, q("QuantidadeRps")).text = str(len(numeros))
    lista = etree.SubElement(lote, q("ListaRps"))
    for numero in numeros:
        rps = rps_document(numero, cnpj=cnpj).find(q("Rps"))
        assert rps is not None
        lista.append(rps)
    return root


def rps_key(numero: int, *, cnpj: str = CNPJ, serie: str = "1") -> RpsKey:
    return RpsKey(cnpj=cnpj, inscricao_municipal=INSCRICAO, numero=numero, serie=serie, tipo=1)
