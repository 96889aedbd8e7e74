"""The invoice request model and parse_invoice_request: normalization, limits, all errors."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from nfse_core.domain.errors import FieldError, ValidationFailed
from nfse_core.domain.models import Endereco, InvoiceRequest, Tomador
from nfse_core.domain.validation import json_path, parse_invoice_request

pytestmark = pytest.mark.unit

TODAY = date(2026, 3, 10)
NOT_DATETIME = "must be a date (YYYY-MM-DD), not a date and time"
NOT_CPF_OR_CNPJ = "must be a CPF (11 digits) or a CNPJ (14 characters), got 4 characters"
IBGE_DV = "IBGE municipality code check digit does not match"
NOT_EMAIL = "must be an e-mail address such as nome@empresa.com.br"
NOT_LC116 = "must be an LC 116/2003 service item in the NN.NN form, e.g. 01.07"
BAD_REFERENCE = "must be 1 to 64 letters, digits or . _ : / - (no spaces)"
BAD_CEP = "CEP must have 8 digits, e.g. 01310-100 or 01310100"


def valid_payload() -> dict[str, Any]:
    """A full valid body, as the handler hands it over (JSON numbers already Decimal)."""
    return {
        "cnpj": "11222333000181",
        "inscricaoMunicipal": "12345678",
        "municipio": "3550308",
        "competencia": "2026-03-01",
        "total": Decimal("1500.00"),
        "itemListaServico": "01.07",
        "codigoTributacaoMunicipio": "010701",
        "discriminacao": "Suporte técnico em informática",
        "aliquota": Decimal("5.00"),
        "issRetido": False,
        "reference": "pedido-2026/03:42",
        "tomador": {
            "cpfCnpj": "52998224725",
            "razaoSocial": "Maria da Silva",
            "email": "maria@example.com.br",
            "endereco": {
                "logradouro": "Avenida Paulista",
                "numero": "1000",
                "complemento": "Conjunto 12",
                "bairro": "Bela Vista",
                "codigoMunicipio": "3550308",
                "uf": "SP",
                "cep": "01310-100",
            },
        },
    }


def with_value(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `payload` with the dotted `path` set to `value`."""
    result = copy.deepcopy(payload)
    *parents, leaf = path.split(".")
    node = result
    for part in parents:
        node = node[part]
    node[leaf] = value
    return result


def without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    result = copy.deepcopy(payload)
    *parents, leaf = path.split(".")
    node = result
    for part in parents:
        node = node[part]
    del node[leaf]
    return result


def errors_of(data: object, today: date = TODAY) -> list[FieldError]:
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(data, today=today)
    assert caught.value.code == "VALIDATION_FAILED"
    assert caught.value.status == 400
    return caught.value.details


def only_error(data: object, today: date = TODAY) -> FieldError:
    details = errors_of(data, today)
    assert len(details) == 1, details
    return details[0]


# --- the happy path and normalization -----------------------------------------------------


def test_valid_request_parses_and_normalizes() -> None:
    payload = with_value(valid_payload(), "cnpj", "11.222.333/0001-81")
    payload = with_value(payload, "tomador.cpfCnpj", "529.982.247-25")
    payload = with_value(payload, "tomador.endereco.uf", "sp")
    payload["total"] = "1500.5"
    payload["aliquota"] = 2
    request = parse_invoice_request(payload, today=TODAY)
    assert request.cnpj == "11222333000181"
    assert request.competencia == date(2026, 3, 1)
    assert request.total == Decimal("1500.50")
    assert str(request.total) == "1500.50"
    assert str(request.aliquota) == "2.00"
    assert request.iss_retido is False
    assert request.tomador is not None
    assert request.tomador.cpf_cnpj == "52998224725"
    assert request.tomador.endereco is not None
    assert request.tomador.endereco.uf == "SP"
    assert request.tomador.endereco.cep == "01310100"


def test_minimal_request_parses() -> None:
    payload = valid_payload()
    for key in ("inscricaoMunicipal", "codigoTributacaoMunicipio", "reference", "tomador"):
        del payload[key]
    request = parse_invoice_request(payload, today=TODAY)
    assert request.tomador is None
    assert request.reference is None


def test_alphanumeric_cnpjs_are_accepted_and_uppercased() -> None:
    payload = with_value(valid_payload(), "cnpj", "12.abc.345/01de-35")
    payload = with_value(payload, "tomador.cpfCnpj", "12ABC34501DE35")
    request = parse_invoice_request(payload, today=TODAY)
    assert request.cnpj == "12ABC34501DE35"
    assert request.tomador is not None
    assert request.tomador.cpf_cnpj == "12ABC34501DE35"


def test_text_is_stripped() -> None:
    request = parse_invoice_request(
        with_value(valid_payload(), "discriminacao", "  Consultoria  "), today=TODAY
    )
    assert request.discriminacao == "Consultoria"


def test_date_and_decimal_objects_are_accepted() -> None:
    payload = valid_payload()
    payload["competencia"] = date(2026, 3, 1)
    payload["total"] = 10
    request = parse_invoice_request(payload, today=TODAY)
    assert request.competencia == date(2026, 3, 1)
    assert request.total == Decimal("10.00")


def test_models_can_still_be_built_by_python_name() -> None:
    # The XML builder and its fixtures construct models in Python; names must keep working.
    endereco = Endereco(
        logradouro="Rua A", numero="1", bairro="Centro", codigo_municipio="3304557",
        uf="rj", cep="20000-000",
    )  # fmt: skip
    tomador = Tomador(cpf_cnpj="11444777000161", endereco=endereco)
    assert tomador.cpf_cnpj == "11444777000161"
    assert endereco.uf == "RJ"
    assert endereco.cep == "20000000"


def test_model_is_frozen() -> None:
    request = parse_invoice_request(valid_payload(), today=TODAY)
    with pytest.raises(ValidationError):
        request.cnpj = "11444777000161"  # type: ignore[misc]


# --- body shape ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], [valid_payload()], "text", 42, True, Decimal(1)])
def test_non_object_body(body: object) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(body)
    assert caught.value.details == [FieldError("", "must be a JSON object")]
    assert caught.value.message == "The request body must be a JSON object"


def test_empty_object_lists_every_required_field() -> None:
    details = errors_of({})
    assert {(d.field, d.message) for d in details} == {
        (field, "is required")
        for field in (
            "cnpj", "municipio", "competencia", "total", "itemListaServico",
            "discriminacao", "issRetido",
        )
    }  # fmt: skip


def test_aliquota_is_required_once_the_fields_are_valid() -> None:
    payload = valid_payload()
    del payload["aliquota"]
    assert only_error(payload) == FieldError(
        "aliquota", "is required when ISS is due (exigibilidadeIss 1, 6, 7)"
    )


def test_unknown_and_snake_case_fields_are_rejected() -> None:
    payload = valid_payload()
    payload["desconto"] = 1
    payload["tomador"]["endereco"]["pais"] = "BR"
    payload["tomador"]["cpf_cnpj"] = payload["tomador"].pop("cpfCnpj")
    details = errors_of(payload)
    assert set(details) == {
        FieldError("desconto", "is not a known field"),
        FieldError("tomador.endereco.pais", "is not a known field"),
        FieldError("tomador.cpf_cnpj", "is not a known field"),
    }


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("tomador", "Maria", "must be an object"),
        ("tomador.endereco", [], "must be an object"),
        ("cnpj", 11222333000181, "must be a string"),
        ("municipio", 3550308, "must be a string"),
        ("discriminacao", None, "must be a string"),
        ("issRetido", "true", "must be true or false"),
        ("issRetido", 0, "must be true or false"),
        ("competencia", "01/03/2026", "must be a date in the form YYYY-MM-DD"),
        ("competencia", 1767225600, "must be a date in the form YYYY-MM-DD"),
        ("competencia", "2026-02-30", "is not a valid calendar date"),
        ("competencia", "2026-03-01T00:00:00", "must be a date in the form YYYY-MM-DD"),
        ("competencia", datetime(2026, 3, 1, tzinfo=UTC), NOT_DATETIME),
        ("total", True, "must be a number, not a boolean"),
        ("total", 1.5, "must be an exact decimal (JSON number or string), not a float"),
        ("total", "abc", "must be a number such as 1234.56"),
        ("total", "NaN", "must be a number such as 1234.56"),
        ("total", "1_000", "must be a number such as 1234.56"),
        ("total", "١٢", "must be a number such as 1234.56"),
        ("total", Decimal("NaN"), "must be a finite number"),
        ("total", Decimal("Infinity"), "must be a finite number"),
        ("total", None, "must be a number"),
        ("total", [1], "must be a number"),
        ("aliquota", False, "must be a number, not a boolean"),
    ],
)  # fmt: skip
def test_wrong_types(path: str, value: Any, message: str) -> None:
    assert only_error(with_value(valid_payload(), path, value)) == FieldError(path, message)


# --- identifiers and codes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("cnpj", "11222333000182", "CNPJ check digits do not match"),
        ("cnpj", "12ABC34501DE36", "CNPJ check digits do not match"),
        ("cnpj", "191", "CNPJ must have 14 characters, got 3"),
        ("tomador.cpfCnpj", "52998224724", "CPF check digits do not match"),
        ("tomador.cpfCnpj", "11111111111", "CPF check digits do not match"),
        ("tomador.cpfCnpj", "11444777000162", "CNPJ check digits do not match"),
        ("tomador.cpfCnpj", "1234", NOT_CPF_OR_CNPJ),
        ("municipio", "3550309", IBGE_DV),
        ("municipio", "355030", "IBGE municipality code must have 7 digits"),
        ("tomador.endereco.codigoMunicipio", "3550301", IBGE_DV),
        ("tomador.endereco.uf", "XX", "must be one of the 27 UFs, e.g. SP"),
        ("tomador.endereco.uf", "RJ", "must be SP, the state of codigoMunicipio 3550308"),
        ("tomador.endereco.cep", "1310-100", BAD_CEP),
        ("tomador.endereco.cep", "01310.100", BAD_CEP),
        ("tomador.email", "maria", NOT_EMAIL),
        ("tomador.email", "maria@localhost", NOT_EMAIL),
        ("tomador.email", "ma ria@x.com", NOT_EMAIL),
        ("itemListaServico", "1.07", "must be in the NN.NN form: use 01.07"),
        ("itemListaServico", "99.99", NOT_LC116),
        ("itemListaServico", "0107", NOT_LC116),
        ("reference", "has space", BAD_REFERENCE),
        ("reference", "a" * 65, BAD_REFERENCE),
        ("reference", "pedido#1", BAD_REFERENCE),
        ("discriminacao", "linha\x00zero", "must not contain control characters"),
        ("tomador.razaoSocial", "Maria\ud800", "must be valid Unicode text"),
        ("tomador.razaoSocial", "Maria\x1b[0m", "must not contain control characters"),
        ("discriminacao", "fim\ufffe", "must not contain control characters"),
    ],
)  # fmt: skip
def test_field_rules(path: str, value: Any, message: str) -> None:
    assert only_error(with_value(valid_payload(), path, value)) == FieldError(path, message)


def test_ibge_exception_code_is_accepted() -> None:
    # Bom Princípio do Piauí (PI): one of the nine codes whose check digit breaks the rule.
    payload = with_value(valid_payload(), "municipio", "2201919")
    payload = with_value(payload, "tomador.endereco.codigoMunicipio", "2201919")
    payload = with_value(payload, "tomador.endereco.uf", "PI")
    assert parse_invoice_request(payload, today=TODAY).municipio == "2201919"


def test_reference_at_64_characters_is_fine() -> None:
    request = parse_invoice_request(with_value(valid_payload(), "reference", "a" * 64), today=TODAY)
    assert request.reference == "a" * 64


# --- money and aliquota boundaries --------------------------------------------------------

FLOOR = "must be between 2.00 and 5.00 percent"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Decimal("1.99"), f"{FLOOR} for item 01.07 (LC 116 art. 8 and 8-A)"),
        (Decimal("2.00"), None),
        (Decimal("5.00"), None),
        (Decimal("5.01"), "must be between 0 and 5.00 (percent)"),
        (Decimal("2.001"), "must have at most 2 decimal places"),
        ("3.5", None),
        (5, None),
        (0, f"{FLOOR} for item 01.07 (LC 116 art. 8 and 8-A)"),
    ],
)
def test_aliquota_boundaries(value: Any, message: str | None) -> None:
    payload = with_value(valid_payload(), "aliquota", value)
    if message is None:
        assert parse_invoice_request(payload, today=TODAY).aliquota == Decimal(value)
    else:
        assert only_error(payload) == FieldError("aliquota", message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Decimal(0), "must be greater than zero"),
        (0, "must be greater than zero"),
        ("-10.00", "must be greater than zero"),
        (Decimal("0.01"), None),
        (Decimal("1.001"), "must have at most 2 decimal places"),
        (Decimal("9999999999999.99"), None),
        (Decimal("10000000000000.00"), "must be at most 9999999999999.99"),
        (Decimal("1E+999999"), "must be at most 9999999999999.99"),
        (10**40, "must be at most 9999999999999.99"),
    ],
)
def test_total_boundaries(value: Any, message: str | None) -> None:
    payload = with_value(valid_payload(), "total", value)
    if message is None:
        assert parse_invoice_request(payload, today=TODAY).total == Decimal(value)
    else:
        assert only_error(payload) == FieldError("total", message)


# --- text lengths at the XSD limits -------------------------------------------------------

XSD_LIMITS = [
    ("tomador.razaoSocial", 150),  # tsRazaoSocial
    ("tomador.endereco.logradouro", 255),  # tsEndereco
    ("tomador.endereco.numero", 60),  # tsNumeroEndereco
    ("tomador.endereco.complemento", 60),  # tsComplementoEndereco
    ("tomador.endereco.bairro", 60),  # tsBairro
    ("discriminacao", 2000),  # tsDiscriminacao
    ("codigoTributacaoMunicipio", 20),  # tsCodigoTributacao
    ("inscricaoMunicipal", 15),  # tsInscricaoMunicipal
]


@pytest.mark.parametrize(("path", "limit"), XSD_LIMITS)
def test_text_at_the_xsd_maximum_is_accepted(path: str, limit: int) -> None:
    parse_invoice_request(with_value(valid_payload(), path, "x" * limit), today=TODAY)


@pytest.mark.parametrize(("path", "limit"), XSD_LIMITS)
def test_text_over_the_xsd_maximum_is_rejected(path: str, limit: int) -> None:
    error = only_error(with_value(valid_payload(), path, "x" * (limit + 1)))
    assert error == FieldError(path, f"must have at most {limit} characters")


@pytest.mark.parametrize(("path", "limit"), XSD_LIMITS)
def test_blank_text_is_rejected(path: str, limit: int) -> None:
    assert only_error(with_value(valid_payload(), path, "   ")) == FieldError(
        path, "must not be empty"
    )


def test_email_at_the_xsd_maximum() -> None:
    local = "a" * (80 - len("@example.com"))
    parse_invoice_request(
        with_value(valid_payload(), "tomador.email", f"{local}@example.com"), today=TODAY
    )
    error = only_error(with_value(valid_payload(), "tomador.email", f"{local}a@example.com"))
    assert error == FieldError("tomador.email", "must have at most 80 characters")


# --- competencia --------------------------------------------------------------------------


def test_competencia_today_is_accepted_tomorrow_is_not() -> None:
    payload = with_value(valid_payload(), "competencia", TODAY.isoformat())
    assert parse_invoice_request(payload, today=TODAY).competencia == TODAY
    tomorrow = with_value(valid_payload(), "competencia", (TODAY + timedelta(days=1)).isoformat())
    assert only_error(tomorrow) == FieldError(
        "competencia",
        "must not be in the future (today is 2026-03-10 in São Paulo (America/Sao_Paulo))",
    )


def test_competencia_uses_the_validation_context_today() -> None:
    payload = with_value(valid_payload(), "competencia", "2026-03-11")
    request = InvoiceRequest.model_validate(payload, context={"today": date(2026, 3, 11)})
    assert request.competencia == date(2026, 3, 11)
    with pytest.raises(ValidationError):
        InvoiceRequest.model_validate(payload, context={"today": TODAY})


def test_competencia_context_accepts_an_aware_datetime() -> None:
    payload = with_value(valid_payload(), "competencia", "2026-03-10")
    # 01:00 UTC on the 11th is still the 10th in São Paulo.
    now = datetime(2026, 3, 11, 1, 0, tzinfo=UTC)
    assert InvoiceRequest.model_validate(payload, context={"today": now}).competencia == TODAY
    with pytest.raises(ValidationError):
        InvoiceRequest.model_validate(
            with_value(payload, "competencia", "2026-03-11"), context={"today": now}
        )


def test_competencia_without_today_uses_sao_paulo_today() -> None:
    far_future = with_value(valid_payload(), "competencia", "2999-01-01")
    with pytest.raises(ValidationFailed):
        parse_invoice_request(far_future)
    parse_invoice_request(valid_payload())  # 2026-03-01 is in the past by now


# --- everything at once -------------------------------------------------------------------


def test_every_bad_field_is_listed_at_once_with_its_json_path() -> None:
    payload = valid_payload()
    payload.update(
        cnpj="11222333000182",
        municipio="3550309",
        competencia="2026-03-11",
        total=Decimal("1.001"),
        itemListaServico="1.07",
        discriminacao="",
        aliquota=Decimal("5.01"),
        issRetido="sim",
        reference="bad reference",
        inscricaoMunicipal="x" * 16,
        codigoTributacaoMunicipio="x" * 21,
        extra=1,
    )
    payload["tomador"].update(cpfCnpj="52998224724", email="nope", razaoSocial="x" * 151)
    payload["tomador"]["endereco"].update(
        codigoMunicipio="1234567", uf="ZZ", cep="123", numero="", bairro="x" * 61
    )
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(payload, today=TODAY)
    fields = [d.field for d in caught.value.details]
    assert sorted(fields) == sorted(
        [
            "cnpj", "municipio", "competencia", "total", "itemListaServico", "discriminacao",
            "aliquota", "issRetido", "reference", "inscricaoMunicipal",
            "codigoTributacaoMunicipio", "extra", "tomador.cpfCnpj", "tomador.email",
            "tomador.razaoSocial", "tomador.endereco.codigoMunicipio", "tomador.endereco.uf",
            "tomador.endereco.cep", "tomador.endereco.numero", "tomador.endereco.bairro",
        ]
    )  # fmt: skip
    assert caught.value.message == "The invoice request is invalid: 20 fields are wrong"
    for detail in caught.value.details:
        assert detail.message
        assert "pydantic" not in detail.message.lower()
        assert "http" not in detail.message
        assert "Value error" not in detail.message
    assert caught.value.body()["error"]["details"][0] == caught.value.details[0].as_dict()


def test_one_bad_field_message_is_singular() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_invoice_request(with_value(valid_payload(), "cnpj", "1"), today=TODAY)
    assert caught.value.message == "The invoice request is invalid: 1 field is wrong"


def test_json_path() -> None:
    assert json_path(("tomador", "endereco", "cep")) == "tomador.endereco.cep"
    assert json_path(()) == ""
    assert json_path(("itens", 0, "valor")) == "itens[0].valor"


def test_missing_nested_required_fields() -> None:
    payload = without(valid_payload(), "tomador.endereco.cep")
    payload = without(payload, "tomador.endereco.uf")
    assert set(errors_of(payload)) == {
        FieldError("tomador.endereco.cep", "is required"),
        FieldError("tomador.endereco.uf", "is required"),
    }
