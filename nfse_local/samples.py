"""Sample tenants and invoice bodies shared by the demo, the invoke command and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SampleTenant:
    tenant_id: str
    name: str
    cnpjs: tuple[str, ...]
    username: str


TENANTS: tuple[SampleTenant, ...] = (
    SampleTenant("acme", "ACME Servicos Ltda", ("11222333000181", "12ABC34501DE35"), "ops@acme"),
    SampleTenant("globex", "Globex Consultoria SA", ("11444777000161",), "ops@globex"),
)


def invoice_body(
    cnpj: str = "11222333000181",
    *,
    total: str = "1500.00",
    discriminacao: str = "Desenvolvimento de software sob encomenda - novembro/2026",
    reference: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid POST /invoices body (São Paulo, LC 116 item 01.07, 5% ISS)."""
    body: dict[str, Any] = {
        "cnpj": cnpj,
        "inscricaoMunicipal": "12345678",
        "municipio": "3550308",
        "competencia": "2026-11-01",
        "total": total,
        "itemListaServico": "01.07",
        "discriminacao": discriminacao,
        "aliquota": "5.00",
        "issRetido": False,
        "tomador": {
            "cpfCnpj": "52998224725",
            "razaoSocial": "Maria da Silva",
            "email": "maria@example.com",
            "endereco": {
                "logradouro": "Avenida Paulista",
                "numero": "1000",
                "bairro": "Bela Vista",
                "codigoMunicipio": "3550308",
                "uf": "SP",
                "cep": "01310100",
            },
        },
    }
    if reference is not None:
        body["reference"] = reference
    body.update(overrides)
    return body


def simples_nacional_body(cnpj: str = "11222333000181", **overrides: Any) -> dict[str, Any]:
    """A valid body of a Simples Nacional company (OptanteSimplesNacional 1, regime 6 ME/EPP),
    its ISS at the 2% floor."""
    fields: dict[str, Any] = {
        "optanteSimplesNacional": True,
        "regimeEspecialTributacao": 6,
        "aliquota": "2.00",
    }
    fields.update(overrides)
    return invoice_body(cnpj, **fields)


def export_body(cnpj: str = "11222333000181", **overrides: Any) -> dict[str, Any]:
    """A valid export of services (exigibilidadeIss 4: no ISS due, LC 116 art. 2, I) to a
    tomador in the United States (BACEN country 2496), identified by its NIF."""
    fields: dict[str, Any] = {
        "exigibilidadeIss": 4,
        "codigoPais": "2496",
        "tomador": {
            "nif": "98-7654321",
            "razaoSocial": "Example Software Inc.",
            "email": "billing@example.com",
            "enderecoExterior": {
                "codigoPais": "2496",
                "enderecoCompleto": "500 Market Street, Suite 100, San Francisco, CA 94105",
            },
        },
    }
    fields.update(overrides)
    body = invoice_body(cnpj, **fields)
    if "aliquota" not in overrides:
        del body["aliquota"]  # no ISS is due: no rate applies
    return body


# A municipality the registry maps to the Sistema Nacional NFS-e (providers.json).
NACIONAL_MUNICIPIO = "3106200"  # Belo Horizonte, MG


def nacional_body(cnpj: str = "11222333000181", **overrides: Any) -> dict[str, Any]:
    """A valid body for an NFS-e Nacional municipality (Belo Horizonte), its tomador there."""
    body = invoice_body(cnpj)
    body["municipio"] = NACIONAL_MUNICIPIO
    body["tomador"]["endereco"] |= {
        "codigoMunicipio": NACIONAL_MUNICIPIO,
        "uf": "MG",
        "cep": "30130010",
        "logradouro": "Avenida Afonso Pena",
        "bairro": "Centro",
    }
    body.update(overrides)
    return body


# One municipality of each ABRASF provider family the registry ships (municipalities.csv), where
# the local stack issues through the simulator speaking that family's dialect.
FAMILY_MUNICIPIOS: dict[str, tuple[str, str]] = {
    "issnet-2.04": ("3133808", "Itaúna/MG"),
    "webiss-2.02": ("2910800", "Feira de Santana/BA"),
    "betha-2.02": ("3101607", "Alfenas/MG"),
}


def family_body(family: str, cnpj: str = "11222333000181", **overrides: Any) -> dict[str, Any]:
    """A valid body for the municipality of an ABRASF provider family (FAMILY_MUNICIPIOS)."""
    body = invoice_body(cnpj)
    body["municipio"] = FAMILY_MUNICIPIOS[family][0]
    body.update(overrides)
    return body
