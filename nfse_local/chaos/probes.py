"""Reading the stack during and after a run: DynamoDB scans, queue depths, the ledger, and the
scratch PostgreSQL database the run's ledger lives in."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("nfse_local.chaos")

SELECT_LEDGER = "SELECT invoice_id, status, nfse_number, total FROM nfse.invoices"


@contextlib.contextmanager
def scratch_ledger(use_postgres: bool) -> Iterator[str]:
    """A fresh PostgreSQL database for the run's ledger (dropped after); "" means SQLite.

    Fresh, because the RPS counters start at 1 with every stack and the ledger refuses a
    second invoice with an RPS it already holds.
    """
    if not use_postgres:
        yield ""
        return
    # The run's scratch database lives on the suite's server: the configured one (LEDGER_TEST_PG,
    # DATABASE_URL, 127.0.0.1:5432), else an embedded one for this run (nfse_local/pg.py); SQLite
    # only when neither can be had.
    try:
        import psycopg  # noqa: PLC0415 - optional here: without it the ledger is SQLite
        from psycopg import sql as pgsql  # noqa: PLC0415 - as psycopg above

        from nfse_local import pg  # noqa: PLC0415 - imports psycopg

        pg_admin = pg.admin_conninfo()
        admin = psycopg.connect(pg_admin, autocommit=True)
    except Exception as exc:
        log.warning("PostgreSQL unavailable (%s); the ledger is SQLite", exc)
        yield ""
        return
    name = f"chaos_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(pg_admin)
    url = (
        f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}"
        f":{params.get('port', 5432)}/{name}"
    )
    try:
        yield url
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


def scan(ddb: Any, table: str, *, statuses_only: bool = False) -> list[dict[str, Any]]:
    """Every item of `table` (consistent reads); only invoiceId and status when `statuses_only`."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    if statuses_only:
        kwargs |= {
            "ProjectionExpression": "invoiceId, #s",
            "ExpressionAttributeNames": {"#s": "status"},
        }
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def execution_names(sfn: Any, state_machine_arn: str) -> list[str]:
    """The names of every execution of the state machine, running or ended."""
    names: list[str] = []
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn}
    while True:
        page = sfn.list_executions(**kwargs)
        names.extend(str(e["name"]) for e in page.get("executions", []))
        if not page.get("nextToken"):
            return names
        kwargs["nextToken"] = page["nextToken"]


def queue_depth(sqs: Any, url: str, *, visible_only: bool = False) -> int:
    """Messages in the queue: visible ones, and unless `visible_only` in flight and delayed too."""
    names = ["ApproximateNumberOfMessages"]
    if not visible_only:
        names += ["ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)
