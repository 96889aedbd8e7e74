"""Settings from the environment: types, bounds, cross-field rules, every problem at once."""

from __future__ import annotations

import dataclasses

import pytest

from nfse_core.config import (
    ApiSettings,
    IssuanceSettings,
    LedgerSettings,
    ProcessorSettings,
    QuerySettings,
    SettingsError,
    WorkerSettings,
)

pytestmark = pytest.mark.unit

API_ENV = {
    "INVOICES_TABLE": "invoices",
    "IDEMPOTENCY_TABLE": "idempotency",
    "TENANTS_TABLE": "tenants",
    "RPS_COUNTERS_TABLE": "counters",
    "DOCS_BUCKET": "docs",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:1:stateMachine:x",
}
WORKER_ENV = {
    "INVOICES_TABLE": "invoices",
    "DOCS_BUCKET": "docs",
    "REQUESTS_QUEUE_URL": "http://127.0.0.1/q",
    "DATABASE_URL": "sqlite://",
}


def test_defaults_apply_and_unknown_variables_are_ignored() -> None:
    settings = ApiSettings.from_env({**API_ENV, "PATH": "/bin", "SOMETHING_ELSE": "x"})
    assert settings.invoices_table == "invoices"
    assert settings.rps_serie == "1"
    assert settings.max_body_bytes == 65_536
    assert settings.docs_kms_key_id == ""


def test_values_are_converted_by_the_field_type() -> None:
    settings = WorkerSettings.from_env(
        {
            **WORKER_ENV,
            "WORKER_CONCURRENCY": "32",
            "WORKER_BACKOFF_BASE_SECONDS": "0.5",
            "PROVIDER_ENVIRONMENT": "producao",
        }
    )
    assert settings.concurrency == 32
    assert settings.backoff_base_seconds == 0.5
    assert settings.provider_environment == "producao"
    assert isinstance(settings.cert_cache_seconds, float)


def test_every_problem_is_reported_at_once_by_variable_name() -> None:
    with pytest.raises(SettingsError) as caught:
        WorkerSettings.from_env(
            {
                "DATABASE_URL": "sqlite://",
                "WORKER_CONCURRENCY": "many",
                "WORKER_WAIT_SECONDS": "21",
                "CERT_SOURCE": "vault",
                "CERT_CACHE_SECONDS": "nan",
            }
        )
    message = str(caught.value)
    assert message.startswith("WorkerSettings: invalid or missing settings:")
    for expected in (
        "INVOICES_TABLE: required",
        "DOCS_BUCKET: required",
        "REQUESTS_QUEUE_URL: required",
        "WORKER_CONCURRENCY: must be an integer",
        "WORKER_WAIT_SECONDS: must be at most 20",
        "CERT_SOURCE: must be one of secretsmanager, file",
        "CERT_CACHE_SECONDS: must be a finite number",
    ):
        assert expected in message


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("INVOICES_TABLE", "", "INVOICES_TABLE: must not be empty"),
        ("RPS_SERIE", "A-1", "RPS_SERIE: must match"),
        ("RPS_SERIE", "123456", "RPS_SERIE: must match"),
        ("MAX_BODY_BYTES", "0", "MAX_BODY_BYTES: must be greater than 0"),
        ("IDEMPOTENCY_TTL_SECONDS", "1.5", "IDEMPOTENCY_TTL_SECONDS: must be an integer"),
    ],
)
def test_bounds_are_checked(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        ApiSettings.from_env({**API_ENV, variable: value})


def test_cross_field_rules_run_once_every_field_is_valid() -> None:
    no_ledger = {k: v for k, v in WORKER_ENV.items() if k != "DATABASE_URL"}
    with pytest.raises(SettingsError, match="set DATABASE_URL, or DB_CLUSTER_ARN"):
        IssuanceSettings.from_env(no_ledger)
    with pytest.raises(SettingsError, match="CERT_SOURCE=file needs CERT_DIR"):
        IssuanceSettings.from_env({**WORKER_ENV, "CERT_SOURCE": "file"})
    data_api = {**no_ledger, "DB_CLUSTER_ARN": "arn:c", "DB_SECRET_ARN": "arn:s"}
    assert IssuanceSettings.from_env(data_api).cluster_arn == "arn:c"


def test_settings_are_frozen_and_read_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVOICES_TABLE", "from-os-environ")
    settings = QuerySettings.from_env()
    assert settings.invoices_table == "from-os-environ"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.invoices_table = "other"  # type: ignore[misc]


def test_each_component_has_its_own_required_variables() -> None:
    assert LedgerSettings.from_env({}).database == "nfse"
    with pytest.raises(SettingsError, match="DLQ_URL: required"):
        ProcessorSettings.from_env(WORKER_ENV)
    assert ProcessorSettings.from_env({**WORKER_ENV, "DLQ_URL": "http://q"}).max_messages == 50


def test_variables_name_what_a_component_reads_and_what_it_must_have() -> None:
    assert QuerySettings.variables() == {"INVOICES_TABLE"}
    assert ApiSettings.variables(required_only=True) == set(API_ENV)
    assert "RPS_SERIE" in ApiSettings.variables()
    assert WorkerSettings.variables(required_only=True) == {
        "INVOICES_TABLE",
        "DOCS_BUCKET",
        "REQUESTS_QUEUE_URL",
    }
