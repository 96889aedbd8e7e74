"""The invoice request a client POSTs, checked against the fiscal rules before anything is written.

Field names in JSON are camelCase (the API contract, api/openapi.yaml); Python uses snake_case.
Money is Decimal, never float: the handler parses JSON numbers as Decimal. Text limits are the
ABRASF 2.04 XSD's (tsRazaoSocial, tsEndereco, ...), so a valid request always builds a valid RPS.
Every validator raises with a stable `type` and a message meant for the client
(nfse_core.domain.validation turns them into FieldErrors).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from nfse_core.domain import rules

# Characters XML 1.0 cannot carry (controls other than tab/CR/LF, lone surrogates, U+FFFE/F):
# a string holding one would pass every length check and then break the XML builder.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_REFERENCE = re.compile(r"[A-Za-z0-9._:/-]{1,64}")


def _fail(kind: str, message: str) -> PydanticCustomError:
    # The message goes in as context so braces in it are never read as a template.
    return PydanticCustomError(kind, "{reason}", {"reason": message})


def _xml_text(value: str) -> str:
    if _NOT_XML_CHAR.search(value):
        raise _fail("xml_char", "must not contain control characters")
    return value


def _decimal_input(value: object) -> Decimal:
    """JSON numbers arrive as Decimal (or int); numeric strings are accepted; floats are not."""
    if isinstance(value, bool):
        raise _fail("decimal_type", "must be a number, not a boolean")
    if isinstance(value, float):
        raise _fail("decimal_type", "must be an exact decimal (JSON number or string), not a float")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise _fail("decimal_parsing", "must be a number such as 1234.56")
        try:
            return Decimal(text)
        except (InvalidOperation, ValueError) as exc:  # pragma: no cover - the regex guards it
            raise _fail("decimal_parsing", "must be a number such as 1234.56") from exc
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _fail("decimal_finite", "must be a finite number")
        return value
    raise _fail("decimal_type", "must be a number")


def _money(value: Decimal) -> Decimal:
    problem = rules.money_problem(value)
    if problem:
        raise _fail("money", problem)
    return rules.to_cents(value)


def _aliquota(value: Decimal) -> Decimal:
    problem = rules.aliquota_problem(value)
    if problem:
        raise _fail("aliquota", problem)
    return rules.to_cents(value)


def _date_input(value: object) -> date:
    if isinstance(value, datetime):
        raise _fail("date_type", "must be a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise _fail("date_parsing", "is not a valid calendar date") from exc
    raise _fail("date_type", "must be a date in the form YYYY-MM-DD")


def _ibge(value: str) -> str:
    problem = rules.ibge_problem(value)
    if problem:
        raise _fail("ibge", problem)
    return value


XmlText = Annotated[str, AfterValidator(_xml_text)]
Money = Annotated[Decimal, BeforeValidator(_decimal_input), AfterValidator(_money)]
Aliquota = Annotated[Decimal, BeforeValidator(_decimal_input), AfterValidator(_aliquota)]
IbgeCode = Annotated[str, AfterValidator(_ibge)]
IsoDate = Annotated[date, BeforeValidator(_date_input)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        str_strip_whitespace=True,
        alias_generator=None,
    )


class Endereco(_Model):
    logradouro: XmlText = Field(min_length=1, max_length=255)  # tsEndereco
    numero: XmlText = Field(min_length=1, max_length=60)  # tsNumeroEndereco
    complemento: XmlText | None = Field(default=None, min_length=1, max_length=60)
    bairro: XmlText = Field(min_length=1, max_length=60)  # tsBairro
    codigo_municipio: IbgeCode = Field(alias="codigoMunicipio")
    uf: str = Field(min_length=2, max_length=2)
    cep: str

    @field_validator("uf")
    @classmethod
    def _uf(cls, value: str, info: ValidationInfo) -> str:
        uf = value.upper()
        if not rules.is_valid_uf(uf):
            raise _fail("uf", "must be one of the 27 UFs, e.g. SP")
        # codigoMunicipio is declared first, so it is in info.data when it was valid.
        municipio = info.data.get("codigo_municipio")
        expected = rules.uf_of_ibge(municipio) if isinstance(municipio, str) else None
        if expected is not None and expected != uf:
            raise _fail("uf", f"must be {expected}, the state of codigoMunicipio {municipio}")
        return uf

    @field_validator("cep")
    @classmethod
    def _cep(cls, value: str) -> str:
        if not rules.is_valid_cep(value):
            raise _fail("cep", "CEP must have 8 digits, e.g. 01310-100 or 01310100")
        return rules.normalize_cep(value)


class Tomador(_Model):
    cpf_cnpj: str = Field(alias="cpfCnpj")
    razao_social: XmlText | None = Field(
        default=None, alias="razaoSocial", min_length=1, max_length=150
    )
    email: str | None = Field(default=None, min_length=1, max_length=80)  # tsEmail
    endereco: Endereco | None = None

    @field_validator("cpf_cnpj")
    @classmethod
    def _cpf_cnpj(cls, value: str) -> str:
        problem = rules.cpf_or_cnpj_problem(value)
        if problem:
            raise _fail("cpf_cnpj", problem)
        return rules.normalize_cpf_or_cnpj(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise _fail("email", "must be an e-mail address such as nome@empresa.com.br")
        return value


class InvoiceRequest(_Model):
    cnpj: str
    inscricao_municipal: XmlText | None = Field(
        default=None, alias="inscricaoMunicipal", min_length=1, max_length=15
    )
    municipio: IbgeCode
    competencia: IsoDate
    total: Money
    item_lista_servico: str = Field(alias="itemListaServico")
    codigo_tributacao_municipio: XmlText | None = Field(
        default=None, alias="codigoTributacaoMunicipio", min_length=1, max_length=20
    )
    discriminacao: XmlText = Field(min_length=1, max_length=2000)  # tsDiscriminacao
    aliquota: Aliquota
    iss_retido: bool = Field(alias="issRetido", strict=True)
    tomador: Tomador | None = None
    reference: str | None = Field(default=None)

    @field_validator("cnpj")
    @classmethod
    def _cnpj(cls, value: str) -> str:
        problem = rules.cnpj_problem(value)
        if problem:
            raise _fail("cnpj", problem)
        return rules.normalize_cnpj(value)

    @field_validator("competencia")
    @classmethod
    def _competencia(cls, value: date, info: ValidationInfo) -> date:
        context: Any = info.context
        today = context.get("today") if isinstance(context, dict) else None
        if isinstance(today, datetime):
            today = rules.fiscal_today(today) if today.tzinfo else today.date()
        problem = rules.competencia_problem(value, today if isinstance(today, date) else None)
        if problem:
            raise _fail("competencia", problem)
        return value

    @field_validator("item_lista_servico")
    @classmethod
    def _item(cls, value: str) -> str:
        problem = rules.lc116_problem(value)
        if problem:
            raise _fail("item_lista_servico", problem)
        return value

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not _REFERENCE.fullmatch(value):
            raise _fail("reference", "must be 1 to 64 letters, digits or . _ : / - (no spaces)")
        return value
