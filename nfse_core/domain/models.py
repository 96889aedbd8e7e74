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
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nfse_core.domain import fiscal, lc116, rules
from nfse_core.domain.fiscal import ZERO, Exigibilidade, ResponsavelRetencao

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


def _amount(value: Decimal) -> Decimal:
    problem = rules.amount_problem(value)
    if problem:
        raise _fail("amount", problem)
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


def _digits(kind: str, problem_of: Any) -> Any:
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem:
            raise _fail(kind, problem)
        return rules.only_digits(value)

    return check


def _code_of(labels: dict[int, str], name: str) -> Any:
    """A strict integer that is one of a table's codes, the message listing them."""
    choices = ", ".join(f"{code} ({label})" for code, label in labels.items())

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in labels:
            raise _fail(name, f"must be one of {choices}")
        return value

    return check


XmlText = Annotated[str, AfterValidator(_xml_text)]
Money = Annotated[Decimal, BeforeValidator(_decimal_input), AfterValidator(_money)]
# An amount that may be zero: deductions, discounts, retentions.
Amount = Annotated[Decimal, BeforeValidator(_decimal_input), AfterValidator(_amount)]
Aliquota = Annotated[Decimal, BeforeValidator(_decimal_input), AfterValidator(_aliquota)]
IbgeCode = Annotated[str, AfterValidator(_ibge)]
IsoDate = Annotated[date, BeforeValidator(_date_input)]
CnaeCode = Annotated[str, AfterValidator(_digits("cnae", rules.cnae_problem))]
NbsCode = Annotated[str, AfterValidator(_digits("nbs", rules.nbs_problem))]
TribNacCode = Annotated[str, AfterValidator(_digits("ctribnac", rules.ctribnac_problem))]
PaisCode = Annotated[str, AfterValidator(_digits("pais", rules.pais_problem))]
CstCode = Annotated[str, AfterValidator(_digits("cst", rules.cst_ibs_cbs_problem))]
SixDigitCode = Annotated[str, AfterValidator(_digits("code", rules.six_digit_code_problem))]
ExigibilidadeCode = Annotated[
    int, BeforeValidator(_code_of(fiscal.EXIGIBILIDADE_LABELS, "exigibilidade"))
]
RegimeCode = Annotated[int, BeforeValidator(_code_of(fiscal.REGIME_LABELS, "regime"))]


def _cross_field(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """Rules over several fields, each naming the field at fault (relative to the model that
    checks them); nfse_core.domain.validation spreads them into one FieldError each."""
    return PydanticCustomError(
        "cross_field", "{reason}", {"reason": problems[0][1], "problems": problems}
    )


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


def _cpf_cnpj_value(value: str) -> str:
    problem = rules.cpf_or_cnpj_problem(value)
    if problem:
        raise _fail("cpf_cnpj", problem)
    return rules.normalize_cpf_or_cnpj(value)


CpfCnpj = Annotated[str, AfterValidator(_cpf_cnpj_value)]


class EnderecoExterior(_Model):
    """The address of a tomador abroad (ABRASF 2.04 tcEnderecoExterior)."""

    codigo_pais: PaisCode = Field(alias="codigoPais")
    endereco_completo: XmlText = Field(alias="enderecoCompleto", min_length=1, max_length=255)


class Tomador(_Model):
    cpf_cnpj: CpfCnpj | None = Field(default=None, alias="cpfCnpj")
    # A tomador abroad has no CPF/CNPJ: its tax number there (ABRASF 2.04 NifTomador, tsNif).
    nif: XmlText | None = Field(default=None, min_length=1, max_length=40)
    razao_social: XmlText | None = Field(
        default=None, alias="razaoSocial", min_length=1, max_length=150
    )
    email: str | None = Field(default=None, min_length=1, max_length=80)  # tsEmail
    endereco: Endereco | None = None
    endereco_exterior: EnderecoExterior | None = Field(default=None, alias="enderecoExterior")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise _fail("email", "must be an e-mail address such as nome@empresa.com.br")
        return value

    @model_validator(mode="after")
    def _identity_and_address(self) -> Self:
        problems: list[tuple[str, str]] = []
        if self.cpf_cnpj is None and self.nif is None:
            problems.append(("cpfCnpj", "is required (or nif, for a tomador abroad)"))
        # tcDadosTomador holds a choice of Endereco or EnderecoExterior.
        if self.endereco is not None and self.endereco_exterior is not None:
            problems.append(("enderecoExterior", "only one of endereco and enderecoExterior"))
        if problems:
            raise _cross_field(problems)
        return self


class Intermediario(_Model):
    """ABRASF 2.04 tcDadosIntermediario: every part is required."""

    cpf_cnpj: CpfCnpj = Field(alias="cpfCnpj")
    razao_social: XmlText = Field(alias="razaoSocial", min_length=1, max_length=150)
    codigo_municipio: IbgeCode = Field(alias="codigoMunicipio")


class Retencoes(_Model):
    """Withholdings in reais (fiscal.Retencoes), each 0 unless sent."""

    pis: Amount = ZERO
    cofins: Amount = ZERO
    inss: Amount = ZERO
    ir: Amount = ZERO
    csll: Amount = ZERO
    outras: Amount = ZERO

    def as_fiscal(self) -> fiscal.Retencoes:
        return fiscal.Retencoes(**dict(self))


class IbsCbs(_Model):
    """The IBS and CBS of the tax reform (LC 214/2025), as NFS-e Nacional's DPS 1.01 carries
    them (group IBSCBS): the codes the company's tax classification gives it."""

    cst: CstCode  # IBSCBS/valores/trib/gIBSCBS/CST
    classificacao_tributaria: SixDigitCode = Field(alias="classificacaoTributaria")  # cClassTrib
    indicador_operacao: SixDigitCode = Field(alias="indicadorOperacao")  # cIndOp
    # indDest 1: the destinatário is not the tomador (0 when it is).
    destinatario_diferente: bool = Field(default=False, alias="destinatarioDiferente", strict=True)
    # indFinal: an operation of personal use or consumption (LC 214/2025 art. 57).
    uso_consumo_pessoal: bool | None = Field(default=None, alias="usoConsumoPessoal", strict=True)


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
    codigo_tributacao_nacional: TribNacCode | None = Field(
        default=None, alias="codigoTributacaoNacional"
    )
    codigo_cnae: CnaeCode | None = Field(default=None, alias="codigoCnae")
    codigo_nbs: NbsCode | None = Field(default=None, alias="codigoNbs")
    discriminacao: XmlText = Field(min_length=1, max_length=2000)  # tsDiscriminacao
    exigibilidade_iss: ExigibilidadeCode = Field(
        default=int(Exigibilidade.EXIGIVEL), alias="exigibilidadeIss"
    )
    numero_processo: XmlText | None = Field(
        default=None, alias="numeroProcesso", min_length=1, max_length=30
    )
    aliquota: Aliquota | None = None
    iss_retido: bool = Field(alias="issRetido", strict=True)
    responsavel_retencao: Literal["tomador", "intermediario"] | None = Field(
        default=None, alias="responsavelRetencao"
    )
    municipio_incidencia: IbgeCode | None = Field(default=None, alias="municipioIncidencia")
    codigo_pais: PaisCode | None = Field(default=None, alias="codigoPais")
    valor_deducoes: Amount = Field(default=ZERO, alias="valorDeducoes")
    desconto_incondicionado: Amount = Field(default=ZERO, alias="descontoIncondicionado")
    desconto_condicionado: Amount = Field(default=ZERO, alias="descontoCondicionado")
    retencoes: Retencoes = Field(default_factory=Retencoes)
    optante_simples_nacional: bool = Field(
        default=False, alias="optanteSimplesNacional", strict=True
    )
    regime_especial_tributacao: RegimeCode | None = Field(
        default=None, alias="regimeEspecialTributacao"
    )
    incentivo_fiscal: bool = Field(default=False, alias="incentivoFiscal", strict=True)
    tomador: Tomador | None = None
    intermediario: Intermediario | None = None
    ibs_cbs: IbsCbs | None = Field(default=None, alias="ibsCbs")
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
        # municipio is declared before competencia, so it is in info.data when it was valid:
        # "today" is the municipality's own date.
        municipio = info.data.get("municipio")
        context: Any = info.context
        today = context.get("today") if isinstance(context, dict) else None
        if isinstance(today, datetime):
            today = rules.fiscal_today(today, municipio) if today.tzinfo else today.date()
        problem = rules.competencia_problem(
            value, today if isinstance(today, date) else None, municipio
        )
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

    @field_validator("responsavel_retencao", mode="before")
    @classmethod
    def _responsavel(cls, value: object) -> object:
        if value is not None and (
            not isinstance(value, str) or value not in fiscal.RESPONSAVEL_BY_NAME
        ):
            raise _fail("responsavel_retencao", 'must be "tomador" or "intermediario"')
        return value

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not _REFERENCE.fullmatch(value):
            raise _fail("reference", "must be 1 to 64 letters, digits or . _ : / - (no spaces)")
        return value

    @model_validator(mode="after")
    def _fiscal_rules(self) -> Self:
        problems = [*self._exigibilidade_problems(), *self._retention_problems()]
        if self.codigo_tributacao_nacional is not None:
            problem = rules.ctribnac_item_problem(
                self.codigo_tributacao_nacional, self.item_lista_servico
            )
            if problem:
                problems.append(("codigoTributacaoNacional", problem))
        if not problems:
            problems = fiscal.amounts_problems(self.valores)
        if problems:
            raise _cross_field(problems)
        return self

    def _exigibilidade_problems(self) -> list[tuple[str, str]]:
        exigibilidade = Exigibilidade(self.exigibilidade_iss)
        problems: list[tuple[str, str]] = []
        needs_processo = exigibilidade in fiscal.NEEDS_PROCESSO
        if needs_processo and self.numero_processo is None:
            problems.append(("numeroProcesso", "is required when exigibilidadeIss is 6 or 7"))
        elif not needs_processo and self.numero_processo is not None:
            problems.append(("numeroProcesso", "is only for exigibilidadeIss 6 or 7"))
        if self.iss_due:
            if self.aliquota is None:
                problems.append(
                    ("aliquota", "is required when ISS is due (exigibilidadeIss 1, 6, 7)")
                )
            elif problem := fiscal.aliquota_range_problem(self.aliquota, self.item_lista_servico):
                problems.append(("aliquota", problem))
        elif self.iss_retido:
            problems.append(
                ("issRetido", "must be false when no ISS is due (exigibilidadeIss 2-5)")
            )
        export = exigibilidade is Exigibilidade.EXPORTACAO
        if export and self.codigo_pais is None:
            problems.append(("codigoPais", "is required for an export (exigibilidadeIss 4)"))
        elif not export and self.codigo_pais is not None:
            problems.append(("codigoPais", "is only for an export (exigibilidadeIss 4)"))
        if export and self.municipio_incidencia is not None:
            problems.append(
                ("municipioIncidencia", "must be absent for an export: no ISS is due in Brazil")
            )
        return problems

    def _retention_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.responsavel_retencao is not None and not self.iss_retido:
            problems.append(("responsavelRetencao", "is only for issRetido true"))
        if self.responsavel is ResponsavelRetencao.INTERMEDIARIO and self.intermediario is None:
            problems.append(
                ("intermediario", "is required when responsavelRetencao is intermediario")
            )
        return problems

    # --- what the rules derive from the request (fiscal) ------------------------------------

    @property
    def iss_due(self) -> bool:
        return fiscal.iss_due(self.exigibilidade_iss)

    @property
    def aliquota_aplicada(self) -> Decimal | None:
        """The rate that applies: none when no ISS is due (a rate sent then is ignored)."""
        return self.aliquota if self.iss_due else None

    @property
    def responsavel(self) -> ResponsavelRetencao | None:
        """Who withholds the ISS: the tomador unless the request says otherwise."""
        if not self.iss_retido:
            return None
        return fiscal.RESPONSAVEL_BY_NAME[self.responsavel_retencao or "tomador"]

    @property
    def incidencia(self) -> str | None:
        """The municipality where the ISS is due: the prestador's unless the request names
        another (LC 116 art. 3 lists the services taxed where they are rendered); none for an
        export."""
        if self.exigibilidade_iss == Exigibilidade.EXPORTACAO:
            return None
        return self.municipio_incidencia or self.municipio

    @property
    def tributacao_nacional(self) -> str | None:
        """cTribNac: the one sent, else the documented default of the item (lc116)."""
        return self.codigo_tributacao_nacional or lc116.national_code(self.item_lista_servico)

    def tributacao_nacional_problem(self) -> str | None:
        """Why a standard that requires cTribNac (NFS-e Nacional's DPS) cannot have one: the
        request sent none and the item has several national desdobramentos to choose from."""
        if self.tributacao_nacional is not None:
            return None
        choices = ", ".join(lc116.national_codes(self.item_lista_servico))
        return (
            f"is required for item {self.item_lista_servico}: the national list details it in "
            f"several codes ({choices}); send the one that applies"
        )

    @property
    def valores(self) -> fiscal.Valores:
        return fiscal.compute_valores(
            valor_servicos=self.total,
            valor_deducoes=self.valor_deducoes,
            desconto_incondicionado=self.desconto_incondicionado,
            desconto_condicionado=self.desconto_condicionado,
            retencoes=self.retencoes.as_fiscal(),
            aliquota=self.aliquota_aplicada,
            iss_retido=self.iss_retido,
        )
