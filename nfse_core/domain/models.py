"""The invoice request a client POSTs, validated against the fiscal rules before anything is written.

Field names in JSON are camelCase (the API contract, api/openapi.yaml); Python uses snake_case.
Money is Decimal, never float: the handler parses JSON numbers as Decimal.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        str_strip_whitespace=True,
        alias_generator=None,
    )


class Endereco(_Model):
    logradouro: str = Field(min_length=1, max_length=255)
    numero: str = Field(min_length=1, max_length=60)
    complemento: str | None = Field(default=None, min_length=1, max_length=156)
    bairro: str = Field(min_length=1, max_length=60)
    codigo_municipio: str = Field(alias="codigoMunicipio")
    uf: str = Field(min_length=2, max_length=2)
    cep: str


class Tomador(_Model):
    cpf_cnpj: str = Field(alias="cpfCnpj")
    razao_social: str | None = Field(default=None, alias="razaoSocial", min_length=1, max_length=150)
    email: str | None = Field(default=None, min_length=3, max_length=80)
    endereco: Endereco | None = None


class InvoiceRequest(_Model):
    cnpj: str
    inscricao_municipal: str | None = Field(
        default=None, alias="inscricaoMunicipal", min_length=1, max_length=15
    )
    municipio: str
    competencia: date
    total: Decimal
    item_lista_servico: str = Field(alias="itemListaServico")
    codigo_tributacao_municipio: str | None = Field(
        default=None, alias="codigoTributacaoMunicipio", min_length=1, max_length=20
    )
    discriminacao: str = Field(min_length=1, max_length=2000)
    aliquota: Decimal
    iss_retido: bool = Field(alias="issRetido")
    tomador: Tomador | None = None
    reference: str | None = Field(default=None, min_length=1, max_length=64)


class RpsIdentity(_Model):
    """numero + serie + tipo: unique per prestador, allocated by the atomic counter."""

    numero: int = Field(ge=1, le=999_999_999_999_999)
    serie: str = Field(min_length=1, max_length=5)
    tipo: int = Field(default=1, ge=1, le=3)
