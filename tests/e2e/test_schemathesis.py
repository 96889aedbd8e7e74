"""schemathesis against api/openapi.yaml, served by the whole local stack over HTTP.

Every generated request carries the API key and a valid ID token of tenant `acme`. For every
answer: no 5xx; the answer conforms to the contract (status, content type, schema, headers);
every 4xx has exactly the error body `{"error": {"code", "message", "details": [{"field",
"message"}]}}`; and a refused request writes nothing: the InvoicesTable item count, the
`xml/` objects of the docs bucket, the idempotency records and the RPS counters are the same
before and after it (an XSD refusal may only use up an RPS number, as documented). A 201 adds
exactly its own item and document, or none when it replays an earlier answer.

Two runs: `raw` sends what schemathesis generates from the contract (positive and negative
data); `steered` overlays the fields no random generator satisfies (the tenant's CNPJ, a real
IBGE code with its UF, an LC 116 item, a past competencia, tomador CPF/CEP, and the fiscal
fields made consistent with each other: exigibility, rate, retention, export, amounts) on
positive cases, so the random texts, amounts and rates reach the domain rules, the XML builder
and the XSD.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, CheckFunction, load_all_checks

from nfse_core.domain import fiscal, rules
from nfse_local.stack import LocalStack
from tests.hypothesis_profiles import examples, thorough

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "api" / "openapi.yaml"
TENANT = "acme"
# Per operation; the suite runs a share of them, `make fuzz` all (tests/hypothesis_profiles.py).
MAX_EXAMPLES = {"raw": examples(100), "steered": examples(120)}
ERROR_CODES = {
    "VALIDATION_FAILED": {400},
    "MALFORMED_REQUEST": {400},
    "UNAUTHORIZED": {401},
    "FORBIDDEN": {403},
    "NOT_FOUND": {404},
    "IDEMPOTENCY_CONFLICT": {409},
    "PAYLOAD_TOO_LARGE": {413},
    "UNSUPPORTED_MEDIA_TYPE": {415},
    "XSD_INVALID": {422},
    "NOT_SUPPORTED_BY_PROVIDER": {422},
    "MUNICIPALITY_NOT_SUPPORTED": {422},
}

raw_schema = schemathesis.openapi.from_path(OPENAPI)
steered_schema = schemathesis.openapi.from_path(OPENAPI)
steered_schema.config.generation.update(modes=[GenerationMode.POSITIVE])
if not thorough():
    # The coverage phase walks every property's boundaries: with the fiscal fields that is some
    # 165 positive bodies, nearly all issued (a minute of the suite). The suite keeps the
    # examples and the fuzzed bodies; `make fuzz` (thorough) runs the coverage phase too, and
    # the unit properties (tests/unit/test_xml_model_agreement.py) hold every accepted body to
    # the XSD.
    steered_schema.config.phases.update(phases=["examples", "fuzzing"])

load_all_checks()
# Built-in checks that apply to this API. Left out: positive_data_acceptance (a body can match
# the JSON schema and still break a fiscal rule: check digits, IBGE, LC 116, dates), and
# unsupported_method (API Gateway answers a method a path lacks with 404, as the contract's
# MISSING_AUTHENTICATION_TOKEN response says, not 405).
BUILTIN_CHECKS: list[CheckFunction] = [
    CHECKS.get_one(name)  # type: ignore[misc]
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    )
]


# ------------------------------------------------------------------------- counting ---


@dataclass
class Totals:
    cases: Counter[str]
    statuses: Counter[str]
    steered_refusals: Counter[str]  # the fields the steered run still breaks


TOTALS = Totals(Counter(), Counter(), Counter())


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest, local_stack: LocalStack) -> Iterator[None]:
    yield
    summary = {
        "cases": dict(sorted(TOTALS.cases.items())),
        "statuses": dict(sorted(TOTALS.statuses.items())),
        "steeredRefusals": dict(TOTALS.steered_refusals.most_common()),
    }
    (local_stack.state_dir / "schemathesis-summary.json").write_text(json.dumps(summary, indent=2))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nschemathesis cases: {json.dumps(summary)}", flush=True)


# ------------------------------------------------------------------------- the store ---


@dataclass(frozen=True)
class Snapshot:
    invoices: int
    xml_documents: int
    idempotency_records: int
    rps_numbers: int


def _scan_count(dynamodb: Any, table: str) -> int:
    total = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, Select="COUNT"):
        total += int(page["Count"])
    return total


def _rps_numbers(dynamodb: Any, table: str) -> int:
    total = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        total += sum(int(item["lastNumber"]["N"]) for item in page["Items"])
    return total


class Store:
    """Counts what the API writes; boto3 clients are built once (building one takes 0.1 s)."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.dynamodb = stack.client("dynamodb")
        self.s3 = stack.client("s3")
        self.invoices_table = stack.resources.invoices_table
        self.bucket = stack.resources.docs_bucket
        self.idempotency_table = stack.lambda_env["IDEMPOTENCY_TABLE"]
        self.counters_table = stack.lambda_env["RPS_COUNTERS_TABLE"]

    def snapshot(self) -> Snapshot:
        documents = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix="xml/"
        ):
            documents += int(page.get("KeyCount", 0))
        return Snapshot(
            invoices=_scan_count(self.dynamodb, self.invoices_table),
            xml_documents=documents,
            idempotency_records=_scan_count(self.dynamodb, self.idempotency_table),
            rps_numbers=_rps_numbers(self.dynamodb, self.counters_table),
        )

    def has_invoice(self, invoice_id: str) -> bool:
        found = self.dynamodb.get_item(
            TableName=self.invoices_table, Key={"invoiceId": {"S": invoice_id}}
        )
        return "Item" in found


@pytest.fixture(scope="module")
def store(local_stack: LocalStack) -> Store:
    return Store(local_stack)


# ------------------------------------------------------------------------- the checks ---


def content_type(response: schemathesis.Response) -> str:
    return next(iter(response.headers.get("content-type") or [""]))


def check_error_body(response: schemathesis.Response) -> str:
    """The error body is exactly the contract's; returns its code."""
    assert content_type(response).startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["details"], list), body
    for detail in error["details"]:
        assert isinstance(detail, dict) and set(detail) == {"field", "message"}, body
        assert isinstance(detail["field"], str) and isinstance(detail["message"], str), body
    code = error["code"]
    assert response.status_code in ERROR_CODES.get(code, set()), (response.status_code, body)
    return str(code)


def check_writes(
    store: Store, before: Snapshot, after: Snapshot, response: schemathesis.Response
) -> None:
    status = response.status_code
    if status == 201:
        invoice_id = response.json()["invoiceId"]
        assert store.has_invoice(invoice_id), f"201 for {invoice_id} but no item"
        grown = (after.invoices - before.invoices, after.xml_documents - before.xml_documents)
        assert grown in {(0, 0), (1, 1)}, (grown, response.text)
        return
    if status == 422:  # the RPS number is taken before the XSD check: a gap, never a reuse
        assert after.rps_numbers - before.rps_numbers in {0, 1}
        after = Snapshot(after.invoices, after.xml_documents, after.idempotency_records, 0)
        before = Snapshot(before.invoices, before.xml_documents, before.idempotency_records, 0)
    assert after == before, f"{status} {response.text[:300]} wrote {before} -> {after}"


def run_case(store: Store, run: str, case: schemathesis.Case[Any]) -> schemathesis.Response:
    stack = store.stack
    headers = {
        "x-api-key": stack.api_key,
        "Authorization": f"Bearer {stack.tenant(TENANT).token}",
    }
    before = store.snapshot()
    response = case.call(base_url=stack.api_url, headers=headers, timeout=30)
    after = store.snapshot()
    TOTALS.cases[f"{run} {case.operation.label}"] += 1
    TOTALS.statuses[f"{run} {case.operation.label} {response.status_code}"] += 1

    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if 400 <= response.status_code < 500:
        check_error_body(response)
        if run == "steered":
            details = response.json()["error"]["details"]
            TOTALS.steered_refusals.update({d["field"] for d in details} or {"(none)"})
    check_writes(store, before, after, response)
    case.validate_response(response, checks=BUILTIN_CHECKS, headers=headers)
    return response


# ------------------------------------------------------------------------- steering ---

STEERED_FIELDS: dict[str, Any] = {
    "cnpj": "11222333000181",
    "municipio": "3550308",
    "competencia": "2026-01-15",
    "itemListaServico": "01.07",
}
STEERED_TOMADOR: dict[str, Any] = {"cpfCnpj": "52998224725", "email": "maria@example.com"}
STEERED_ENDERECO: dict[str, Any] = {"codigoMunicipio": "4106902", "uf": "PR", "cep": "80010000"}
STEERED_INTERMEDIARIO: dict[str, Any] = {"cpfCnpj": "11444777000161", "codigoMunicipio": "3304557"}
STEERED_PAIS = "2496"
STEERED_ITEM = STEERED_FIELDS["itemListaServico"]


def _rate_problem(value: Decimal) -> str | None:
    return rules.aliquota_problem(value) or fiscal.aliquota_range_problem(value, STEERED_ITEM)


# Amounts and rates are kept when the rules accept them, replaced otherwise.
STEERED_NUMBERS: dict[str, tuple[Callable[[Decimal], str | None], str]] = {
    "total": (rules.money_problem, "150.75"),
    "aliquota": (_rate_problem, "2.50"),
}
STEERED_AMOUNTS = ("valorDeducoes", "descontoIncondicionado", "descontoCondicionado")
# Codes kept when their rule accepts them, replaced otherwise.
STEERED_CODES: dict[str, tuple[Callable[[str], str | None], str]] = {
    "codigoCnae": (rules.cnae_problem, "6201501"),
    "codigoNbs": (rules.nbs_problem, "115062100"),
    "codigoTributacaoNacional": (
        lambda code: rules.ctribnac_item_problem(rules.only_digits(code), STEERED_ITEM),
        "010701",
    ),
}


def _acceptable(value: Any, problem: Callable[[Decimal], str | None]) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    try:
        return problem(Decimal(str(value))) is None
    except InvalidOperation:
        return False


def _amount(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _steer_amounts(body: dict[str, Any]) -> None:
    """Deductions, discounts and retentions the rules accept, within the total."""
    for name in STEERED_AMOUNTS:
        if name in body and not _acceptable(body[name], rules.amount_problem):
            body[name] = "0"
    retencoes = body.get("retencoes")
    if isinstance(retencoes, dict):
        for name, value in retencoes.items():
            if not _acceptable(value, rules.amount_problem):
                retencoes[name] = "0"
    total = _amount(body["total"])
    if _amount(body.get("valorDeducoes")) + _amount(body.get("descontoIncondicionado")) > total:
        body.pop("valorDeducoes", None)
        body.pop("descontoIncondicionado", None)
    # Room for the ISS withheld at most: 5% of the total.
    room = total * Decimal("0.95")
    taken = _amount(body.get("descontoIncondicionado")) + _amount(body.get("descontoCondicionado"))
    if isinstance(retencoes, dict):
        taken += sum((_amount(v) for v in retencoes.values()), Decimal(0))
    if taken > room:
        body.pop("retencoes", None)
        body.pop("descontoCondicionado", None)
        body.pop("descontoIncondicionado", None)


def _steer_exigibilidade(body: dict[str, Any]) -> None:
    """Exigibility, process number, rate, retention and export consistent with each other."""
    exigibilidade = body.get("exigibilidadeIss", 1)
    if exigibilidade not in fiscal.EXIGIBILIDADE_LABELS or isinstance(exigibilidade, bool):
        exigibilidade = body["exigibilidadeIss"] = 1
    if exigibilidade in {6, 7}:
        body.setdefault("numeroProcesso", "0001234-56.2026.8.26.0100")
    else:
        body.pop("numeroProcesso", None)
    if fiscal.iss_due(exigibilidade) and not _acceptable(body.get("aliquota"), _rate_problem):
        body["aliquota"] = STEERED_NUMBERS["aliquota"][1]
    if not fiscal.iss_due(exigibilidade):
        body["issRetido"] = False
    if exigibilidade == fiscal.Exigibilidade.EXPORTACAO:
        body["codigoPais"] = STEERED_PAIS
        body.pop("municipioIncidencia", None)
    else:
        body.pop("codigoPais", None)
        if "municipioIncidencia" in body:
            body["municipioIncidencia"] = STEERED_FIELDS["municipio"]
    if not body.get("issRetido"):
        body.pop("responsavelRetencao", None)
    elif body.get("responsavelRetencao") == "intermediario":
        body.setdefault("intermediario", {"razaoSocial": "Intermediaria Ltda"})


def _steer_parties(body: dict[str, Any]) -> None:
    tomador = body.get("tomador")
    if isinstance(tomador, dict):
        if "nif" not in tomador or "cpfCnpj" in tomador:
            tomador.update(STEERED_TOMADOR)
        else:
            tomador["email"] = STEERED_TOMADOR["email"]
        endereco = tomador.get("endereco")
        if isinstance(endereco, dict):
            endereco.update(STEERED_ENDERECO)
            tomador.pop("enderecoExterior", None)
        exterior = tomador.get("enderecoExterior")
        if isinstance(exterior, dict):
            exterior["codigoPais"] = STEERED_PAIS
    intermediario = body.get("intermediario")
    if isinstance(intermediario, dict):
        intermediario.update(STEERED_INTERMEDIARIO)


def steer(body: Any) -> None:
    """Overlay valid identifiers on a generated body, in place; free texts stay random."""
    if not isinstance(body, dict):
        return
    body.update(STEERED_FIELDS)
    # The steered municipality is on ABRASF 2.04, which has no IBS/CBS group (a 422 by design;
    # tests/unit/test_nacional_dps.py).
    body.pop("ibsCbs", None)
    for name, (problem, fallback) in STEERED_NUMBERS.items():
        if (name in body or name == "total") and not _acceptable(body.get(name), problem):
            body[name] = fallback
    for name, (code_problem, fallback) in STEERED_CODES.items():
        value = body.get(name)
        if name in body and not (isinstance(value, str) and code_problem(value) is None):
            body[name] = fallback
    if "reference" in body:
        body["reference"] = f"steered-{uuid.uuid4().hex}"
    _steer_exigibilidade(body)
    _steer_amounts(body)
    _steer_parties(body)


# ------------------------------------------------------------------------- the tests ---

_SETTINGS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "derandomize": True,
}


@raw_schema.parametrize()
@settings(max_examples=MAX_EXAMPLES["raw"], **_SETTINGS)  # type: ignore[arg-type]
def test_raw(case: schemathesis.Case[Any], store: Store) -> None:
    run_case(store, "raw", case)


@steered_schema.include(method="POST").parametrize()
@settings(max_examples=MAX_EXAMPLES["steered"], **_SETTINGS)  # type: ignore[arg-type]
def test_steered(case: schemathesis.Case[Any], store: Store) -> None:
    steer(case.body)
    if case.headers and "Idempotency-Key" in case.headers:
        # Generated keys repeat ("0", "00"...) and then rightly answer 409 for another body;
        # the raw run keeps them, this one wants the bodies to reach the end of the path.
        case.headers["Idempotency-Key"] = f"steered-{uuid.uuid4().hex}"
    response = run_case(store, "steered", case)
    if response.status_code == 422:
        # The only request the model accepts and the XSD refuses: a tomador without
        # razaoSocial (tcDadosTomador requires RazaoSocial; docs/architecture.md).
        tomador = case.body.get("tomador") if isinstance(case.body, dict) else None
        assert isinstance(tomador, dict) and "razaoSocial" not in tomador, response.text


# ------------------------------------------------------------------ regressions found ---


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "LOCK", "FOO"])
def test_methods_http_server_does_not_know_get_the_404_error_body(
    local_stack: LocalStack, method: str
) -> None:
    """schemathesis found it: http.server answered a method without a do_<METHOD> with its
    own 501 HTML page (a 5xx without the error body); now it is an unknown route, as in
    API Gateway."""
    headers = {
        "x-api-key": local_stack.api_key,
        "Authorization": f"Bearer {local_stack.tenant(TENANT).token}",
    }
    answer = requests.request(
        method, f"{local_stack.api_url}/invoices", headers=headers, timeout=30
    )
    assert answer.status_code == 404, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "error": {
            "code": "NOT_FOUND",
            "message": "No such route",
            "details": [{"field": "method", "message": f"{method} not served"}],
        }
    }
    assert answer.headers["Allow"] == "POST"
