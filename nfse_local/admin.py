"""Administration of a deployed (or local) platform: `python -m nfse_local admin ...`.

    python -m nfse_local admin put-tenant acme --cnpj 11222333000181 --name "ACME Ltda" \\
        --stack nfse-prod

put-tenant maps the tenant to its CNPJs (a CNPJ belongs to one tenant at most) and gives the
tenant its own API key and usage plan on the API stage, so that each tenant's quota is its own.
It can be run again: it updates the CNPJs and the plan's limits and keeps the key. The key's
value is printed once, when the key is created; later, read it with
`aws apigateway get-api-key --api-key <apiKeyId> --include-value`.

The API comes from the stack's outputs (--stack: ApiId, ApiStage, TenantsTableName and the
TenantPlan* limits) or from --rest-api-id and --stage; --no-api-key only maps the CNPJs. The
table is --table, else $TENANTS_TABLE, else the stack's TenantsTableName.

A tenant id (the users' custom:tenant_id) is 1 to 64 letters, digits, '.', '_' or '-', starting
with a letter or a digit (TENANT_ID_PATTERN): never a '#', which TenantsTable's CNPJ claim items
use.

It uses boto3's default session, so it works against real AWS (profile, SSO, role) and, with
AWS_ENDPOINT_URL set, against the local stack's moto.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from nfse_core.domain.rules import cnpj_problem, normalize_cnpj
from nfse_core.store.control import TENANT_ID_PATTERN, CnpjTaken, TenantDirectory
from nfse_local import coverage, ecr, nacional_registry, onboarding, registry_admin
from nfse_local.outputs import missing_outputs_problem

# The template's ApiRateLimit, ApiBurstLimit and ApiQuotaPerDay defaults, for --rest-api-id
# without --stack (a stack's own values come from its TenantPlan* outputs).
DEFAULT_RATE_LIMIT = 50.0
DEFAULT_BURST_LIMIT = 100
DEFAULT_QUOTA_PER_DAY = 100_000
TENANT_ID_RULE = (
    "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or a digit"
    f" ({TENANT_ID_PATTERN.pattern})"
)
_STACK_OUTPUTS = (
    "ApiId",
    "ApiStage",
    "TenantPlanRateLimit",
    "TenantPlanBurstLimit",
    "TenantPlanQuotaPerDay",
)


class AdminError(RuntimeError):
    """The command cannot run as asked (bad argument, no table, a CNPJ of another tenant)."""


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """The API stage the tenants' usage plans apply to, and a new plan's limits."""

    rest_api_id: str
    stage: str
    rate_limit: float = DEFAULT_RATE_LIMIT
    burst_limit: int = DEFAULT_BURST_LIMIT
    quota_per_day: int = DEFAULT_QUOTA_PER_DAY

    def plan_name(self, tenant: str) -> str:
        # API keys and usage plans are per account and region, not per API: the API and the
        # stage in the name keep two stacks' (or stages') tenants apart.
        return f"{self.rest_api_id}-{self.stage}-{tenant}"


@dataclass(frozen=True, slots=True)
class TenantKey:
    api_key_id: str
    usage_plan_id: str
    value: str | None  # only when the key was created by this run


def stack_outputs(stack_name: str, cloudformation: Any | None = None) -> dict[str, str]:
    """The stack's outputs (OutputKey -> OutputValue)."""
    client = cloudformation if cloudformation is not None else boto3.client("cloudformation")
    try:
        (stack,) = client.describe_stacks(StackName=stack_name)["Stacks"]
    except client.exceptions.ClientError as exc:
        raise AdminError(f"stack {stack_name}: {exc}") from exc
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def api_target(
    outputs: Mapping[str, str],
    *,
    rate_limit: float | None = None,
    burst_limit: int | None = None,
    quota_per_day: int | None = None,
) -> ApiTarget:
    """The API stage and plan limits from a stack's outputs; given limits win."""
    if problem := missing_outputs_problem(outputs, _STACK_OUTPUTS):
        raise AdminError(problem)
    return ApiTarget(
        rest_api_id=outputs["ApiId"],
        stage=outputs["ApiStage"],
        rate_limit=float(outputs["TenantPlanRateLimit"]) if rate_limit is None else rate_limit,
        burst_limit=int(outputs["TenantPlanBurstLimit"]) if burst_limit is None else burst_limit,
        quota_per_day=(
            int(outputs["TenantPlanQuotaPerDay"]) if quota_per_day is None else quota_per_day
        ),
    )


def tenant_id_problem(tenant_id: str) -> str | None:
    """Why `tenant_id` cannot be a tenant id, or None."""
    if TenantDirectory.is_tenant_id(tenant_id):
        return None
    return f"tenant id {tenant_id!r} must be {TENANT_ID_RULE}"


def put_tenant(  # noqa: PLR0913 - keyword-only; the clients are injectable for tests
    tenant_id: str,
    cnpjs: Sequence[str],
    *,
    name: str = "",
    table: str,
    api: ApiTarget | None = None,
    dynamodb: Any | None = None,
    apigateway: Any | None = None,
) -> dict[str, Any]:
    """Map the tenant to its CNPJs and, with `api`, give it its own key and usage plan.

    Returns what was written; `apiKey` (the key's value) only when the key was created now.
    """
    tenant = tenant_id.strip()
    problem = tenant_id_problem(tenant)
    if problem:
        raise AdminError(problem)
    owned: list[str] = []
    for raw in cnpjs:
        cnpj = normalize_cnpj(raw)
        problem = cnpj_problem(cnpj)
        if problem:
            raise AdminError(f"--cnpj {raw}: {problem}")
        owned.append(cnpj)
    if not owned:
        raise AdminError("give at least one --cnpj")
    directory = TenantDirectory(
        dynamodb if dynamodb is not None else boto3.client("dynamodb"), table
    )
    client = None
    if api is not None:  # a wrong API or stage is refused before anything is written
        client = apigateway if apigateway is not None else boto3.client("apigateway")
        _check_stage(client, api)
    # The CNPJs before the key: a refused CNPJ must leave no key or plan behind.
    try:
        directory.put_tenant(tenant, owned, name)
    except (CnpjTaken, ValueError, RuntimeError) as exc:  # also: too many CNPJs, races
        raise AdminError(str(exc)) from exc
    written: dict[str, Any] = {
        "tenantId": tenant,
        "cnpjs": sorted(set(owned)),
        "name": name or tenant,
        "table": table,
    }
    if api is None:
        return written
    key = ensure_tenant_key(client, api, tenant, directory.api_key_id_of(tenant))
    directory.record_api_key_id(tenant, key.api_key_id)
    written |= {
        "apiId": api.rest_api_id,
        "stage": api.stage,
        "apiKeyId": key.api_key_id,
        "usagePlanId": key.usage_plan_id,
    }
    if key.value is not None:
        written["apiKey"] = key.value
    return written


def ensure_tenant_key(
    client: Any, api: ApiTarget, tenant: str, recorded_key_id: str | None = None
) -> TenantKey:
    """The tenant's API key, in the tenant's own usage plan on the API stage, with the plan's
    limits set to `api`'s; each made only when missing, so a re-run creates nothing twice."""
    _check_stage(client, api)
    name = api.plan_name(tenant)
    key = _recorded_key(client, recorded_key_id) or _named(
        _pages(client, "get_api_keys", nameQuery=name, includeValues=False), name
    )
    value: str | None = None
    if key is None:
        # A key that was disabled on purpose stays disabled: only a missing one is created.
        key = client.create_api_key(
            name=name,
            description=f"NFS-e tenant {tenant}",
            enabled=True,
            customerId=tenant,
            tags={"tenant": tenant},
        )
        value = str(key["value"])
    plan = _named(_pages(client, "get_usage_plans"), name)
    if plan is None:
        plan = client.create_usage_plan(
            name=name,
            description=f"NFS-e tenant {tenant}: its own rate and daily quota",
            apiStages=[{"apiId": api.rest_api_id, "stage": api.stage}],
            throttle={"rateLimit": api.rate_limit, "burstLimit": api.burst_limit},
            quota={"limit": api.quota_per_day, "period": "DAY"},
            tags={"tenant": tenant},
        )
    else:
        _update_limits(client, plan, api)
    keys_in_plan = {k["id"] for k in _pages(client, "get_usage_plan_keys", usagePlanId=plan["id"])}
    if key["id"] not in keys_in_plan:
        client.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return TenantKey(str(key["id"]), str(plan["id"]), value)


def _check_stage(client: Any, api: ApiTarget) -> None:
    try:
        client.get_stage(restApiId=api.rest_api_id, stageName=api.stage)
    except client.exceptions.NotFoundException as exc:
        raise AdminError(f"API {api.rest_api_id} has no stage {api.stage!r}") from exc


def _recorded_key(client: Any, key_id: str | None) -> dict[str, Any] | None:
    if not key_id:
        return None
    try:
        key: dict[str, Any] = client.get_api_key(apiKey=key_id, includeValue=False)
    except client.exceptions.NotFoundException:
        return None  # deleted by hand: a new one is made
    return key


def _named(items: Iterator[dict[str, Any]], name: str) -> dict[str, Any] | None:
    # nameQuery matches by prefix: tenant "acme" must not pick up "acme-2"'s key.
    return next((item for item in items if item.get("name") == name), None)


def _pages(client: Any, operation: str, **arguments: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**arguments):
        yield from page.get("items") or []


def _update_limits(client: Any, plan: Mapping[str, Any], api: ApiTarget) -> None:
    """Set an existing plan's limits to `api`'s (a re-run with other limits changes them)."""
    throttle = plan.get("throttle") or {}
    quota = plan.get("quota") or {}
    limits: list[tuple[str, Any, float]] = [
        ("/throttle/rateLimit", throttle.get("rateLimit"), api.rate_limit),
        ("/throttle/burstLimit", throttle.get("burstLimit"), api.burst_limit),
        ("/quota/limit", quota.get("limit"), api.quota_per_day),
    ]
    operations = [
        # "5", not "5.0": a whole rate is written as an integer (moto parses it as one).
        {"op": "replace", "path": path, "value": _number(wanted)}
        for path, current, wanted in limits
        if current is None or float(current) != float(wanted)
    ]
    if operations:
        client.update_usage_plan(usagePlanId=plan["id"], patchOperations=operations)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(float(value))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="admin_command", required=True)
    put = commands.add_parser(
        "put-tenant",
        help="map a tenant to its CNPJs and give it its own API key and usage plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    put.add_argument("tenant", help=f"tenant id (the users' custom:tenant_id): {TENANT_ID_RULE}")
    put.add_argument("--cnpj", action="append", required=True, help="a CNPJ it owns (repeat)")
    put.add_argument("--name", default="", help="display name (default: the tenant id)")
    put.add_argument("--table", default=None, help="TenantsTable name (default: $TENANTS_TABLE)")
    where = put.add_mutually_exclusive_group()
    where.add_argument("--stack", default=None, help="the platform's CloudFormation stack")
    where.add_argument("--rest-api-id", default=None, help="the REST API (with --stage)")
    where.add_argument(
        "--no-api-key", action="store_true", help="only map the CNPJs (no key, no usage plan)"
    )
    put.add_argument("--stage", default=None, help="the API stage (with --rest-api-id)")
    put.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    put.add_argument("--burst-limit", type=int, default=None, help="burst")
    put.add_argument("--quota-per-day", type=int, default=None, help="requests per day")
    onboarding.add_commands(commands)
    registry_admin.add_commands(commands)
    nacional_registry.add_commands(commands)
    coverage.add_commands(commands)
    ecr.add_commands(commands)


def _api_and_table(args: argparse.Namespace) -> tuple[ApiTarget | None, str]:
    table = args.table or os.environ.get("TENANTS_TABLE", "")
    limits = {
        "rate_limit": args.rate_limit,
        "burst_limit": args.burst_limit,
        "quota_per_day": args.quota_per_day,
    }
    if args.stack:
        outputs = stack_outputs(args.stack)
        return api_target(outputs, **limits), table or outputs.get("TenantsTableName", "")
    if args.rest_api_id:
        if not args.stage:
            raise AdminError("--rest-api-id needs --stage")
        given = {k: v for k, v in limits.items() if v is not None}
        return ApiTarget(args.rest_api_id, args.stage, **given), table
    if args.no_api_key:
        return None, table
    raise AdminError(
        "give --stack, or --rest-api-id and --stage, for the tenant's API key and usage plan"
        " (or --no-api-key to only map the CNPJs)"
    )


def run(args: argparse.Namespace) -> int:  # noqa: PLR0911 - one return per command
    if args.admin_command == "ensure-repository":
        return ecr.run(args)
    if args.admin_command in {"put-providers", "providers"}:
        return _run_providers(args)
    if args.admin_command in {"put-certificate", "put-user"}:
        return _run_onboarding(args)
    if args.admin_command == "put-tenant":
        return _run_put_tenant(args)
    if args.admin_command == "refresh-nacional":
        return nacional_registry.run(args)
    if args.admin_command == "coverage":
        code, text = coverage.run(args)
        print(text, file=sys.stdout if code == 0 else sys.stderr)
        return code
    print(f"admin: unknown command {args.admin_command}", file=sys.stderr)
    return 2


def _run_providers(args: argparse.Namespace) -> int:
    try:
        outputs = stack_outputs(args.stack) if args.stack else None
        code, text = registry_admin.run(args, outputs)
    except (AdminError, registry_admin.RegistryAdminError) as error:
        print(f"admin: {error}", file=sys.stderr)
        return 2
    print(text)
    return code


def _run_onboarding(args: argparse.Namespace) -> int:
    try:
        written = onboarding.run(args, os.environ, stack_outputs(args.stack))
    except (AdminError, onboarding.OnboardingError, OSError) as error:
        print(f"admin: {error}", file=sys.stderr)
        return 2
    print(json.dumps(written))
    return 0


def _run_put_tenant(args: argparse.Namespace) -> int:
    try:
        api, table = _api_and_table(args)
        if not table:
            raise AdminError("give --table or set TENANTS_TABLE (or --stack)")
        written = put_tenant(args.tenant, args.cnpj, name=args.name, table=table, api=api)
    except AdminError as error:
        print(f"admin: {error}", file=sys.stderr)
        return 2
    print(json.dumps(written))
    if api is not None and "apiKey" not in written:
        print(
            f"admin: {args.tenant} keeps its API key; read it with `aws apigateway"
            f" get-api-key --api-key {written['apiKeyId']} --include-value`",
            file=sys.stderr,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nfse_local admin", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
