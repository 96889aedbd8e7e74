"""MigrateFn, the deploy's ledger migrations, answering CloudFormation over real HTTP.

CloudFormation waits for a custom resource's answer at the request's ResponseURL; here that is
a loopback server (nfse_local.custom_resources.ResponseCatcher) that records every PUT. First
the protocol (nfse_core.services.custom_resource) with work of the tests' own: an answer in
every case (success, failure, an exception, the function's timeout coming). Then the handler
itself (functions/migrate/app.py) against moto's Secrets Manager (a ThreadedMotoServer) and
the RDS Data API routed to the real PostgreSQL (tests/integration/data_api_router.py): Create
applies both migrations while the cluster resumes, Update is idempotent, Delete keeps the
ledger.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import boto3
import psycopg
import pytest
import requests
from aws_lambda_powertools.utilities.typing import LambdaContext as PowertoolsContext
from moto.server import ThreadedMotoServer

from functions.migrate import app
from nfse_core.services.custom_resource import (
    MAX_RESPONSE_BYTES,
    RESPONSE_MARGIN_SECONDS,
    CustomResourceRequest,
    Deadline,
    DeadlineExceeded,
    Done,
    MalformedRequest,
    Outcome,
    answer,
    run_custom_resource,
)
from nfse_core.store.migrate import APP_ROLE, MigrationError, migrations_digest
from nfse_core.store.sql_executors import DataApiExecutor
from nfse_local.custom_resources import ResponseCatcher, cfn_request
from nfse_local.runtime import LambdaContext
from tests.integration.data_api_router import (
    DataApiRouter,
    admin_conninfo,
    scratch_database,
    sqlalchemy_url,
)
from tests.integration.test_ledger_roles import app_role_left_as_found  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

REGION = "us-east-1"
CLUSTER = "arn:aws:rds:us-east-1:123456789012:cluster:ledger"
SERVICE_TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:nfse-MigrateFn"
LOGICAL_ID = "LedgerMigrations"


@pytest.fixture
def catcher() -> Iterator[ResponseCatcher]:
    with ResponseCatcher() as server:
        yield server


def request(
    kind: str, catcher: ResponseCatcher, physical_resource_id: str | None = None
) -> dict[str, Any]:
    return cfn_request(
        kind,
        catcher.url(f"/answer/{kind.lower()}"),
        logical_resource_id=LOGICAL_ID,
        resource_type="Custom::LedgerMigrations",
        service_token=SERVICE_TOKEN,
        properties={"MigrationsDigest": migrations_digest(), "DbName": "nfse"},
        old_properties={"MigrationsDigest": "0" * 64, "DbName": "nfse"},
        physical_resource_id=physical_resource_id,
    )


def context(seconds: float = 300.0) -> PowertoolsContext:
    """The runtime's context (nfse_local's), `seconds` before the function's timeout."""
    runtime = LambdaContext(function_name="nfse-MigrateFn", timeout_ms=int(seconds * 1000))
    return cast("PowertoolsContext", runtime)


def the_answer(catcher: ResponseCatcher, event: dict[str, Any]) -> dict[str, Any]:
    """The one answer to `event` (by its RequestId), after checking what CloudFormation checks."""
    answers = [a for a in catcher.wait() if a.body["RequestId"] == event["RequestId"]]
    assert len(answers) == 1, answers
    received = answers[0]
    # The presigned URL is signed without a content type: S3 refuses a PUT that sends one.
    assert received.headers.get("Content-Type") == ""
    assert len(received.raw) <= MAX_RESPONSE_BYTES
    body = received.body
    assert body["StackId"] == event["StackId"]
    assert body["LogicalResourceId"] == event["LogicalResourceId"]
    assert body["Status"] in ("SUCCESS", "FAILED")
    assert body["PhysicalResourceId"]
    return body


# ------------------------------------------------------------------------ the protocol ----


def test_success_is_answered_with_the_requests_ids(catcher: ResponseCatcher) -> None:
    event = request("Create", catcher)
    seen: list[CustomResourceRequest] = []

    def work(req: CustomResourceRequest, deadline: Deadline) -> Done:
        seen.append(req)
        return Done("did it", {"Applied": "0001_x"})

    outcome = run_custom_resource(
        event, context().get_remaining_time_in_millis, work, physical_resource_id="thing"
    )
    body = the_answer(catcher, event)
    assert body == {
        "Status": "SUCCESS",
        "Reason": "did it",
        "PhysicalResourceId": "thing",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": LOGICAL_ID,
        "Data": {"Applied": "0001_x"},
    }
    assert outcome.status == "SUCCESS"
    assert seen[0].properties["MigrationsDigest"] == migrations_digest()


def test_a_failure_is_answered_failed_with_its_reason(catcher: ResponseCatcher) -> None:
    event = request("Create", catcher)

    def work(req: CustomResourceRequest, deadline: Deadline) -> Done:
        raise MigrationError("0003_x.sql changed after it was applied; add a new migration")

    run_custom_resource(
        event, context().get_remaining_time_in_millis, work, physical_resource_id="thing"
    )
    body = the_answer(catcher, event)
    assert body["Status"] == "FAILED"
    assert body["Reason"] == (
        "MigrationError: 0003_x.sql changed after it was applied; add a new migration"
    )
    # A failed Create still names a resource, so CloudFormation's rollback can delete it.
    assert body["PhysicalResourceId"] == "thing"


def test_failed_is_answered_before_the_timeout_while_the_work_still_runs(
    catcher: ResponseCatcher,
) -> None:
    event = request("Update", catcher, physical_resource_id="thing")
    release = threading.Event()
    started = threading.Event()

    def work(req: CustomResourceRequest, deadline: Deadline) -> Done:
        started.set()
        release.wait(60)  # a Data API call that does not come back in time
        return Done("too late")

    # Half a second of the function's time is left once the answer's margin is kept.
    near_timeout = context(RESPONSE_MARGIN_SECONDS + 0.5)
    try:
        outcome = run_custom_resource(
            event, near_timeout.get_remaining_time_in_millis, work, physical_resource_id="new"
        )
        body = the_answer(catcher, event)
    finally:
        release.set()
    assert started.is_set()
    assert outcome.status == "FAILED"
    assert body["Status"] == "FAILED"
    assert "still running" in body["Reason"] and "safe to run again" in body["Reason"]
    # Update keeps CloudFormation's id, or it would delete "the old resource".
    assert body["PhysicalResourceId"] == "thing"
    # Answered while the function still had its margin left.
    assert near_timeout.get_remaining_time_in_millis() > 0


def test_delete_does_nothing_and_succeeds(catcher: ResponseCatcher) -> None:
    event = request("Delete", catcher, physical_resource_id="ledger-migrations")
    called: list[str] = []

    def work(req: CustomResourceRequest, deadline: Deadline) -> Done:
        called.append(req.request_type)
        return Done("should not run")

    run_custom_resource(
        event, context().get_remaining_time_in_millis, work, physical_resource_id="other"
    )
    body = the_answer(catcher, event)
    assert called == []
    assert (body["Status"], body["PhysicalResourceId"]) == ("SUCCESS", "ledger-migrations")


def test_an_unknown_request_type_is_answered_failed(catcher: ResponseCatcher) -> None:
    event = request("Create", catcher)
    event["RequestType"] = "Upgrade"
    run_custom_resource(
        event,
        context().get_remaining_time_in_millis,
        lambda req, deadline: Done("should not run"),
        physical_resource_id="thing",
    )
    assert the_answer(catcher, event)["Status"] == "FAILED"


def test_an_answer_the_url_refuses_is_sent_again() -> None:
    with ResponseCatcher(failures=2) as flaky:
        event = request("Create", flaky)
        pauses: list[float] = []
        req = CustomResourceRequest.parse(event)
        answer(req, Outcome("SUCCESS", "ok", "thing"), pause=pauses.append)
        body = the_answer(flaky, event)
    assert body["Status"] == "SUCCESS"
    assert pauses == [1.0, 1.0]


def test_an_oversized_reason_is_cut_to_fit(catcher: ResponseCatcher) -> None:
    event = request("Create", catcher)

    def work(req: CustomResourceRequest, deadline: Deadline) -> Done:
        raise MigrationError('é"\\' * 3000)  # escapes make the JSON longer than the text

    run_custom_resource(
        event, context().get_remaining_time_in_millis, work, physical_resource_id="thing"
    )
    body = the_answer(catcher, event)
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("MigrationError: é") and body["Reason"].endswith("...")


def test_the_deadline_refuses_a_wait_that_leaves_no_time_to_answer() -> None:
    deadline = Deadline(context(RESPONSE_MARGIN_SECONDS + 1).get_remaining_time_in_millis, 15.0)
    deadline.sleep(0.01)
    with pytest.raises(DeadlineExceeded):
        deadline.sleep(5)


def test_an_event_without_a_response_url_fails_the_invocation() -> None:
    with pytest.raises(MalformedRequest):
        run_custom_resource(
            {"RequestType": "Create"},
            context().get_remaining_time_in_millis,
            lambda req, deadline: Done("no"),
            physical_resource_id="thing",
        )


# ------------------------------------------------------------------------- the handler ----


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    app.settings.cache_clear()
    yield
    app.settings.cache_clear()


@pytest.mark.usefixtures("fresh_settings")
def test_the_handler_answers_failed_without_its_settings(
    catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DB_CLUSTER_ARN", "DB_SECRET_ARN", "DATABASE_URL", "DB_APP_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    event = request("Create", catcher)
    result = app.handler(event, context())
    body = the_answer(catcher, event)
    assert body["Status"] == result["Status"] == "FAILED"
    assert body["Reason"].startswith("SettingsError: MigrateSettings")
    assert body["PhysicalResourceId"] == app.PHYSICAL_RESOURCE_ID


@pytest.mark.usefixtures("fresh_settings")
def test_the_handler_answers_failed_when_the_database_refuses(
    catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DB_CLUSTER_ARN", "DB_SECRET_ARN", "DB_APP_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    # A database that does not exist on the suite's server: the first statement raises.
    server = sqlalchemy_url(admin_conninfo()).rsplit("/", 1)[0]
    monkeypatch.setenv("DATABASE_URL", f"{server}/no_such_ledger_database")
    event = request("Create", catcher)
    app.handler(event, context())
    body = the_answer(catcher, event)
    assert body["Status"] == "FAILED"
    assert "no_such_ledger_database" in body["Reason"]


# ------------------------------------------ the handler on moto and the real PostgreSQL ----


@dataclass(frozen=True)
class Deployment:
    """What CloudFormation would have made: the cluster (a scratch database behind the Data API
    router), its master secret and the app secret (moto)."""

    conninfo: str
    router: DataApiRouter
    master_secret_arn: str
    app_secret_arn: str
    app_password: str


@pytest.fixture
def deployment(
    monkeypatch: pytest.MonkeyPatch,
    fresh_settings: None,
    app_role_left_as_found: None,  # noqa: F811 - the imported fixture
) -> Iterator[Deployment]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto's backends are process-wide: each deployment starts from an empty account.
        requests.post(f"http://{host}:{port}/moto-api/reset", timeout=10).raise_for_status()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.delenv("DATABASE_URL", raising=False)
        # The handler builds its clients from boto3's default session: a new one, routed.
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        boto3.setup_default_session(region_name=REGION)
        secretsmanager = boto3.client("secretsmanager")
        password = secrets.token_urlsafe(30)
        master = secretsmanager.create_secret(
            Name="rds!cluster-ledger",
            SecretString=json.dumps({"username": "nfse_admin", "password": "x" * 20}),
        )["ARN"]
        app_secret = secretsmanager.create_secret(
            Name="nfse-ledger-app",
            SecretString=json.dumps({"username": APP_ROLE, "password": password}),
        )["ARN"]
        with scratch_database(prefix="migratefn") as conninfo:
            # The master secret signs in as the admin; the app secret as nfse_app, once its
            # password checks out against the role's stored verifier.
            router = DataApiRouter(
                conninfo,
                secrets={app_secret: json.dumps({"username": APP_ROLE, "password": password})},
            )
            assert boto3.DEFAULT_SESSION is not None
            router.route(boto3.DEFAULT_SESSION)
            monkeypatch.setenv("DB_CLUSTER_ARN", CLUSTER)
            monkeypatch.setenv("DB_SECRET_ARN", master)
            monkeypatch.setenv(
                "DB_NAME", str(psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"])
            )
            monkeypatch.setenv("DB_APP_SECRET_ARN", app_secret)
            yield Deployment(conninfo, router, master, app_secret, password)
    finally:
        server.stop()


def ledger_state(conninfo: str) -> dict[str, Any]:
    with psycopg.connect(conninfo) as conn:
        schema = conn.execute("SELECT to_regclass('nfse.invoices') IS NOT NULL").fetchone()
        applied = conn.execute(
            "SELECT version, applied_at FROM nfse.schema_migrations ORDER BY version"
        ).fetchall()
        role = conn.execute(
            "SELECT has_table_privilege(%s, 'nfse.invoices', 'INSERT')", (APP_ROLE,)
        ).fetchone()
    return {"table": schema and schema[0], "applied": applied, "app_may_insert": role and role[0]}


def test_create_migrates_through_a_resuming_cluster_and_update_is_idempotent(
    deployment: Deployment, catcher: ResponseCatcher
) -> None:
    # Aurora at 0 ACU answers DatabaseResumingException until it has resumed.
    deployment.router.inject("DatabaseResumingException", "resuming", times=2)
    create = request("Create", catcher)
    app.handler(create, context())
    body = the_answer(catcher, create)
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["RequestId"] == create["RequestId"]
    assert body["PhysicalResourceId"] == app.PHYSICAL_RESOURCE_ID
    assert body["Data"] == {
        "Applied": "0001_invoices,0002_app_role",
        "MigrationsDigest": migrations_digest(),
    }
    assert body["Reason"] == "applied 0001_invoices, 0002_app_role"
    # The two refused calls were made again: every statement ran as the master secret's user.
    assert [c["secretArn"] for c in deployment.router.calls[:3]] == [
        deployment.master_secret_arn
    ] * 3
    first = ledger_state(deployment.conninfo)
    assert first["table"] is True and first["app_may_insert"] is True
    assert [version for version, _ in first["applied"]] == ["0001_invoices", "0002_app_role"]

    # nfse_app signs in with the app secret's password through the Data API (the router
    # checks it against the verifier the handler set), as the worker will.
    as_app = DataApiExecutor(CLUSTER, deployment.app_secret_arn, "nfse", deployment.router.client())
    assert as_app.execute("SELECT current_user AS who") == [{"who": APP_ROLE}]

    update = request("Update", catcher, physical_resource_id=body["PhysicalResourceId"])
    app.handler(update, context())
    updated = [a.body for a in catcher.wait(2) if a.body["RequestId"] == update["RequestId"]]
    assert len(updated) == 1
    assert updated[0]["Status"] == "SUCCESS", updated[0]["Reason"]
    assert updated[0]["Reason"] == "up to date"
    assert updated[0]["Data"]["Applied"] == ""
    assert updated[0]["PhysicalResourceId"] == app.PHYSICAL_RESOURCE_ID
    assert ledger_state(deployment.conninfo) == first  # nothing applied again
    assert as_app.execute("SELECT current_user AS who") == [{"who": APP_ROLE}]

    delete = request("Delete", catcher, physical_resource_id=app.PHYSICAL_RESOURCE_ID)
    app.handler(delete, context())
    deleted = [a.body for a in catcher.wait(3) if a.body["RequestId"] == delete["RequestId"]]
    assert deleted[0]["Status"] == "SUCCESS"
    assert ledger_state(deployment.conninfo) == first  # the ledger outlives the resource


def test_a_wrong_app_secret_fails_the_deploy_before_anything_changes(
    deployment: Deployment, catcher: ResponseCatcher
) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=deployment.app_secret_arn,
        SecretString=json.dumps({"username": "nfse_admin", "password": "p" * 20}),
    )
    create = request("Create", catcher)
    app.handler(create, context())
    body = the_answer(catcher, create)
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("MigrationError:")
    assert "username must be 'nfse_app'" in body["Reason"]
    assert deployment.router.calls == []  # not one statement ran
