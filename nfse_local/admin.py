"""Administration of a deployed (or local) platform: `python -m nfse_local admin ...`.

    python -m nfse_local admin put-tenant acme --cnpj 11222333000181 --name "ACME Ltda"

It uses boto3's default session, so it works against real AWS (profile, SSO, role) and, with
AWS_ENDPOINT_URL set, against the local stack's moto. The table is --table or $TENANTS_TABLE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import boto3

from nfse_core.domain.rules import cnpj_problem, normalize_cnpj
from nfse_core.store.control import TenantDirectory

_TENANT_ID_MAX = 64  # the user pool's custom:tenant_id constraint


class AdminError(RuntimeError):
    """The command cannot run as asked (bad argument, no table)."""


def put_tenant(
    tenant_id: str,
    cnpjs: Sequence[str],
    *,
    name: str = "",
    table: str,
    dynamodb: Any | None = None,
) -> dict[str, Any]:
    """Write the tenant -> CNPJs mapping; returns what was written."""
    tenant = tenant_id.strip()
    if not tenant or len(tenant) > _TENANT_ID_MAX:
        raise AdminError(f"the tenant id must have 1 to {_TENANT_ID_MAX} characters")
    owned: list[str] = []
    for raw in cnpjs:
        cnpj = normalize_cnpj(raw)
        problem = cnpj_problem(cnpj)
        if problem:
            raise AdminError(f"--cnpj {raw}: {problem}")
        owned.append(cnpj)
    if not owned:
        raise AdminError("give at least one --cnpj")
    client = dynamodb if dynamodb is not None else boto3.client("dynamodb")
    TenantDirectory(client, table).put_tenant(tenant, owned, name)
    return {"tenantId": tenant, "cnpjs": sorted(set(owned)), "name": name or tenant, "table": table}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="admin_command", required=True)
    put = commands.add_parser("put-tenant", help="map a tenant to the CNPJs it may emit for")
    put.add_argument("tenant", help="tenant id (the users' custom:tenant_id)")
    put.add_argument("--cnpj", action="append", required=True, help="a CNPJ it owns (repeat)")
    put.add_argument("--name", default="", help="display name (default: the tenant id)")
    put.add_argument("--table", default=None, help="TenantsTable name (default: $TENANTS_TABLE)")


def run(args: argparse.Namespace) -> int:
    if args.admin_command == "put-tenant":
        table = args.table or os.environ.get("TENANTS_TABLE", "")
        try:
            if not table:
                raise AdminError("give --table or set TENANTS_TABLE")
            written = put_tenant(args.tenant, args.cnpj, name=args.name, table=table)
        except AdminError as error:
            print(f"admin: {error}", file=sys.stderr)
            return 2
        print(json.dumps(written))
        return 0
    print(f"admin: unknown command {args.admin_command}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfse_local admin", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
