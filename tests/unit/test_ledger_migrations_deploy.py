"""The deploy runs the ledger migrations (issue 11): template.yaml's LedgerMigrations custom
resource, MigrateFn's wiring and permissions, the digest that makes a new migration file run,
and the layer that ships the files where the code looks for them. No sockets: the handler's
answers to the stack are tested over real HTTP in
tests/integration/test_migrate_custom_resource.py."""

from __future__ import annotations

import contextlib
import io
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import nfse_core.store.migrate as migrate_module
from nfse_core.config import MigrateSettings, SettingsError
from nfse_core.services.custom_resource import RESPONSE_MARGIN_SECONDS
from nfse_core.store.migrate import MIGRATIONS_DIR, load_migrations, main, migrations_digest
from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LEDGER_WRITERS = ("WorkerService", "ProcessorFn", "SweeperFn")


@cache
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def resource(logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = template()["Resources"][logical_id]
    return found


def depends_on(logical_id: str) -> list[str]:
    value = resource(logical_id).get("DependsOn") or []
    return [value] if isinstance(value, str) else list(value)


# ------------------------------------------------------------------------------ digest ----


def test_the_templates_digest_is_the_migrations_digest() -> None:
    # Fails when a migration is added or changed without updating template.yaml: the deploy
    # would then not run it (CloudFormation calls MigrateFn only when a property changes).
    value = resource("LedgerMigrations")["Properties"]["MigrationsDigest"]
    assert value == migrations_digest(), (
        "template.yaml LedgerMigrations.MigrationsDigest is stale: set it to the output of"
        " `python -m nfse_core.store.migrate --digest`"
    )


def test_a_new_or_changed_migration_changes_the_digest(tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    before = migrations_digest(copy)
    assert before == migrations_digest(MIGRATIONS_DIR)

    (copy / "0003_more.sql").write_text("CREATE TABLE IF NOT EXISTS nfse.more (id text);\n")
    added = migrations_digest(copy)
    assert added != before

    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "-- a comment\n")
    assert migrations_digest(copy) not in (before, added)


def test_the_digest_is_what_sha256sum_computes(tmp_path: Path) -> None:
    """Anyone can check it with coreutils: `(cd db/migrations && sha256sum *.sql) | sha256sum`."""
    if shutil.which("sha256sum") is None:
        pytest.fail("sha256sum (coreutils) is needed for this check")
    names = " ".join(shlex.quote(m.path.name) for m in load_migrations())
    listing = subprocess.run(
        f"sha256sum {names} | sha256sum",
        shell=True,
        cwd=MIGRATIONS_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout.split()[0] == migrations_digest()


def test_the_command_prints_the_digest() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--digest"], environ={}) == 0
    assert out.getvalue().strip() == migrations_digest()


# --------------------------------------------------------------------- the custom resource ----


def test_nothing_writes_the_ledger_before_the_migrations() -> None:
    for logical_id in LEDGER_WRITERS:
        assert "LedgerMigrations" in depends_on(logical_id), logical_id


def test_every_ledger_writer_of_the_template_depends_on_the_migrations() -> None:
    """Found by what they are given, not by a list: a new component that signs in to the ledger
    with LedgerAppSecret must wait for the migrations too."""
    resources = template()["Resources"]
    app_secret = {"Ref": "LedgerAppSecret"}
    writers: set[str] = set()
    for logical_id, res in resources.items():
        props = res.get("Properties") or {}
        if res["Type"] == "AWS::Serverless::Function":
            env = (props.get("Environment") or {}).get("Variables") or {}
            if env.get("DB_SECRET_ARN") == app_secret:
                writers.add(logical_id)
        if res["Type"] == "AWS::ECS::Service":
            task = resources[props["TaskDefinition"]["Ref"]]["Properties"]
            for container in task["ContainerDefinitions"]:
                env = {e["Name"]: e.get("Value") for e in container.get("Environment") or []}
                if env.get("DB_SECRET_ARN") == app_secret:
                    writers.add(logical_id)
    assert set(LEDGER_WRITERS) <= writers
    for logical_id in writers:
        assert "LedgerMigrations" in depends_on(logical_id), logical_id


def test_the_custom_resource_calls_migrate_fn_once_the_database_runs() -> None:
    migrations = resource("LedgerMigrations")
    assert migrations["Type"] == "Custom::LedgerMigrations"
    props = migrations["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFn", "Arn"]}
    # The Data API answers only once the cluster has an instance.
    assert "DbInstance" in depends_on("LedgerMigrations")
    # Another cluster, database or app secret runs the migrations (and the password) again.
    assert props["DbClusterArn"] == {"Fn::GetAtt": ["DbCluster", "DBClusterArn"]}
    assert props["DbName"] == {"Ref": "DbName"}
    assert props["AppSecretArn"] == {"Ref": "LedgerAppSecret"}
    # CloudFormation gives up on a silent resource after ServiceTimeout, not after an hour.
    function = resource("MigrateFn")["Properties"]
    assert function["Timeout"] < props["ServiceTimeout"] <= 3600


def test_migrate_fn_signs_in_as_the_admin_and_sets_the_app_password() -> None:
    env = resource("MigrateFn")["Properties"]["Environment"]["Variables"]
    assert env["DB_CLUSTER_ARN"] == {"Fn::GetAtt": ["DbCluster", "DBClusterArn"]}
    assert env["DB_SECRET_ARN"] == {"Fn::GetAtt": ["DbCluster", "MasterUserSecret.SecretArn"]}
    assert env["DB_NAME"] == {"Ref": "DbName"}
    assert env["DB_APP_SECRET_ARN"] == {"Ref": "LedgerAppSecret"}


def test_migrate_fn_permissions_are_exactly_what_it_uses() -> None:
    props = resource("MigrateFn")["Properties"]
    (policy,) = props["Policies"]
    granted = {
        (statement["Effect"], action, repr(target))
        for statement in policy["Statement"]
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
        for target in (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
    }
    cluster = {"Fn::GetAtt": ["DbCluster", "DBClusterArn"]}
    master = {"Fn::GetAtt": ["DbCluster", "MasterUserSecret.SecretArn"]}
    assert granted == {
        ("Allow", "rds-data:ExecuteStatement", repr(cluster)),
        ("Allow", "secretsmanager:GetSecretValue", repr(master)),
        ("Allow", "secretsmanager:GetSecretValue", repr({"Ref": "LedgerAppSecret"})),
        ("Allow", "kms:Decrypt", repr({"Fn::GetAtt": ["KmsKey", "Arn"]})),
    }


def test_migrate_fn_runs_outside_the_vpc_with_its_own_encrypted_log_group() -> None:
    props = resource("MigrateFn")["Properties"]
    assert "VpcConfig" not in props
    assert "ReservedConcurrentExecutions" not in props
    group = props["LoggingConfig"]["LogGroup"]
    log_group = resource(group["Ref"])
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["KmsKey", "Arn"]}
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # The answer needs its margin inside the function's time.
    assert props["Timeout"] > 2 * RESPONSE_MARGIN_SECONDS
    skipped = {s["id"] for s in resource("MigrateFn")["Metadata"]["checkov"]["skip"]}
    assert skipped == {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117"}


# ------------------------------------------------------------------------------- settings ----


def test_migrate_settings_need_a_ledger_and_both_data_api_arns() -> None:
    data_api = {"DB_CLUSTER_ARN": "arn:c", "DB_SECRET_ARN": "arn:s", "DB_APP_SECRET_ARN": "arn:a"}
    settings = MigrateSettings.from_env(data_api)
    assert (settings.cluster_arn, settings.secret_arn, settings.app_secret_arn) == (
        "arn:c",
        "arn:s",
        "arn:a",
    )
    assert MigrateSettings.from_env({"DATABASE_URL": "sqlite://"}).app_secret_arn == ""
    with pytest.raises(SettingsError, match="DB_CLUSTER_ARN and DB_SECRET_ARN go together"):
        MigrateSettings.from_env({"DB_CLUSTER_ARN": "arn:c", "DATABASE_URL": "sqlite://"})
    with pytest.raises(SettingsError, match="set DATABASE_URL, or DB_CLUSTER_ARN"):
        MigrateSettings.from_env({})


# -------------------------------------------------------------------------------- the layer ----


def test_the_layer_ships_the_migrations_where_the_code_finds_them(tmp_path: Path) -> None:
    """Runs build-CoreLayer's copy steps (not its pip install) into a scratch ARTIFACTS_DIR:
    in the layer, MIGRATIONS_DIR (relative to nfse_core) must hold db/migrations' files."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is needed to read the Makefile's build-CoreLayer recipe")
    artifacts = tmp_path / "layer"
    dry_run = subprocess.run(
        [make, "-n", "build-CoreLayer", f"ARTIFACTS_DIR={artifacts}", "PYTHON=python3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    copies = [
        line
        for line in dry_run.stdout.splitlines()
        if line.startswith(("cp ", "mkdir ")) and "pip install" not in line
    ]
    assert any("db/migrations" in line for line in copies), dry_run.stdout
    (artifacts / "python").mkdir(parents=True)
    for line in copies:
        subprocess.run(line, shell=True, cwd=ROOT, check=True)
    shipped_module = artifacts / "python" / "nfse_core" / "store" / "migrate.py"
    assert shipped_module.is_file()
    # migrate.py finds the files at parents[2] / "db" / "migrations", as in the repository.
    assert Path(migrate_module.__file__).resolve().parents[2] / "db" / "migrations" == (
        MIGRATIONS_DIR
    )
    shipped = shipped_module.parents[2] / "db" / "migrations"
    assert sorted(p.name for p in shipped.glob("*.sql")) == sorted(
        m.path.name for m in load_migrations()
    )
    assert migrations_digest(shipped) == migrations_digest()
