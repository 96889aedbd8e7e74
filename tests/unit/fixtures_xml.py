"""Sample invoice requests for the XML tests, built through the model as the API builds them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity

INVOICE_ID = "01JABCDEFGHJKMNPQRSTVWXYZ0"
EMITTED_ON = date(2025, 3, 10)
TOMADOR_CPF = "52998224725"
TOMADOR_CNPJ = "11444777000161"


def sample_endereco() -> dict[str, Any]:
    return {
        "logradouro": "Avenida Paulista",
        "numero": "1000",
        "complemento": "Conjunto 12",
        "bairro": "Bela Vista",
        "codigoMunicipio": "3550308",
        "uf": "SP",
        "cep": "01310100",
    }


def sample_tomador(cpf_cnpj: str = TOMADOR_CPF) -> dict[str, Any]:
    return {
        "cpfCnpj": cpf_cnpj,
        "razaoSocial": "Maria da Silva",
        "email": "maria@example.com",
        "endereco": sample_endereco(),
    }


def sample_payload(**overrides: Any) -> dict[str, Any]:
    """The request body as a client sends it (JSON aliases); keys in `overrides` replace it."""
    payload: dict[str, Any] = {
        "cnpj": "11222333000181",
        "inscricaoMunicipal": "12345678",
        "municipio": "3550308",
        "competencia": date(2025, 3, 1),
        "total": Decimal("1500.00"),
        "itemListaServico": "01.07",
        "codigoTributacaoMunicipio": "010701",
        "discriminacao": "Suporte técnico em informática — março/2025",
        "aliquota": Decimal("5.00"),
        "issRetido": False,
        "tomador": sample_tomador(),
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not None}


def sample_request(**overrides: Any) -> InvoiceRequest:
    """A valid InvoiceRequest; pass e.g. tomador=None to leave the tomador out."""
    return InvoiceRequest.model_validate(sample_payload(**overrides))


def sample_rps(numero: int = 42, serie: str = "1") -> RpsIdentity:
    return RpsIdentity(numero=numero, serie=serie, tipo=1)
