"""MigrateFn (custom resource LedgerMigrations): the deploy applies the ledger's migrations.

CloudFormation calls it on Create and on every Update of LedgerMigrations, whose
MigrationsDigest changes with db/migrations, before anything that writes the ledger is created
or updated (their DependsOn). It runs the admin's migrate command's steps
(nfse_core.store.migrate.migrate_for_deploy) and always answers the stack
(nfse_core.services.custom_resource). Delete does nothing: the ledger outlives the stack's
resources (DbCluster's snapshot policy) and a migration is never undone.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from nfse_core import observability
from nfse_core.config import MigrateSettings
from nfse_core.services.custom_resource import (
    CustomResourceRequest,
    Deadline,
    Done,
    run_custom_resource,
)
from nfse_core.store.migrate import migrate_for_deploy, migrations_digest

logger = observability.logger()

# Stable: CloudFormation would delete the old resource if an Update answered another id.
PHYSICAL_RESOURCE_ID = "ledger-migrations"


@cache
def settings() -> MigrateSettings:
    return MigrateSettings.from_env()


def apply_migrations(request: CustomResourceRequest, deadline: Deadline) -> Done:
    applied = migrate_for_deploy(settings(), sleep=deadline.sleep)
    shipped = migrations_digest()
    if request.properties.get("MigrationsDigest") != shipped:
        # Not an error: a rollback sends the previous digest to this code. A stale template
        # value is caught by tests/unit/test_ledger_migrations_deploy.py.
        logger.warning(
            "MigrationsDigest differs from the shipped migrations", extra={"shipped": shipped}
        )
    reason = f"applied {', '.join(applied)}" if applied else "up to date"
    return Done(reason, {"Applied": ",".join(applied), "MigrationsDigest": shipped})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    outcome = run_custom_resource(
        event,
        context.get_remaining_time_in_millis,
        apply_migrations,
        physical_resource_id=PHYSICAL_RESOURCE_ID,
    )
    return {"Status": outcome.status, "Reason": outcome.reason}
