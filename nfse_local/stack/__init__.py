"""The whole platform on 127.0.0.1 in one process tree: `python -m nfse_local serve` and tests.

LocalStack (core.py) starts, in order: a moto server (moto.py: every resource of
template.yaml, Step Functions executing the real ASL, Cognito issuing real RS256 JWTs), the
sample tenants (tenants.py: Cognito users with custom:tenant_id, their ID tokens, TenantsTable
items, throwaway A1 certificates), the ledger (ledger.py: SQLite under .local/ by default,
PostgreSQL when DATABASE_URL is set; migrated by MigrateFn's handler, as the deploy's
LedgerMigrations custom resource does), the provider simulator (a thread), every function in
its own process, the adapter worker (workers.py: its own process, like the Fargate task), the
local API gateway calling the real handlers, and the schedules (schedules.py). When all is up
it writes the session file (session.py: .local/session.json: URLs, API key, tokens, the
handlers' env) and stops everything it started on exit, Ctrl-C or SIGTERM. What it is told
comes in small frozen dataclasses (options.py).

moto keeps its state in process-wide backends and reads MOTO_PORT from os.environ: run one
LocalStack per process, and no in-process `mock_aws` while it runs.
"""

from nfse_local.stack.core import LocalStack
from nfse_local.stack.options import (
    DUMMY_CREDENTIALS,
    REGION,
    ROOT,
    DeploymentOptions,
    StackError,
    StackOptions,
    WorkerOptions,
    module_available,
)
from nfse_local.stack.schedules import schedule_period_seconds
from nfse_local.stack.tenants import TenantSession

__all__ = [
    "DUMMY_CREDENTIALS",
    "REGION",
    "ROOT",
    "DeploymentOptions",
    "LocalStack",
    "StackError",
    "StackOptions",
    "TenantSession",
    "WorkerOptions",
    "module_available",
    "schedule_period_seconds",
]
