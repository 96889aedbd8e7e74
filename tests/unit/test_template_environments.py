"""template.yaml resolved as CloudFormation would create it, for every samconfig.toml
environment x region (us-east-1, sa-east-1) x NetworkMode, checked against the rules that made
stacks fail to create (issue 11): Aurora's AutoPause, AWS's name-length limits with the longest
stack name, reserved concurrency, roles the stack assumes exist, and the worker's route out.

`make validate` runs this file. NFSE_TEMPLATE=<path> (and NFSE_SAMCONFIG=<path>) run it against
another template and samconfig (e.g. older ones: `git show <rev>:template.yaml > /tmp/t.yaml`).
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from nfse_local.cfn import (
    ResolvedStack,
    Resolver,
    ResourceRef,
    load_template,
    resolve_template,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = Path(os.environ.get("NFSE_TEMPLATE", ROOT / "template.yaml"))
SAMCONFIG_PATH = Path(os.environ.get("NFSE_SAMCONFIG", ROOT / "samconfig.toml"))
REGIONS = ("us-east-1", "sa-east-1")
NETWORK_MODES = ("public", "nat", "existing")
ACCOUNT_ID = "123456789012"
# CloudFormation stack names: up to 128 characters, a letter first, then letters, digits, "-".
# https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
LONGEST_STACK_NAME = "n" + "x" * 127
STACK_UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
# What NetworkMode existing is given (and any parameter without a default, as --guided asks).
EXISTING_NETWORK = {"VpcId": "vpc-0123456789abcdef0", "SubnetIds": "subnet-0aaa,subnet-0bbb"}
NO_DEFAULT_VALUES = {
    "WorkerImageUri": "123456789012.dkr.ecr.sa-east-1.amazonaws.com/nfse-worker:1",
    **EXISTING_NETWORK,
}

# ---------------------------------------------------------------- name-length limits ----
# (resource type, property path) -> most characters AWS accepts. "*" stands for any list index
# or map key. A named property (a key ending in Name or Family whose value the template computes)
# missing here fails test_named_properties_are_in_the_limits_table: look the limit up, add it.
NAME_LIMITS: dict[tuple[str, str], int] = {
    # https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html (AliasName 1-256)
    ("AWS::KMS::Alias", "AliasName"): 256,
    # https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateUserPool.html
    # (PoolName 1-128)
    ("AWS::Cognito::UserPool", "UserPoolName"): 128,
    # https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateUserPoolClient.html
    # (ClientName 1-128)
    ("AWS::Cognito::UserPoolClient", "ClientName"): 128,
    # https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
    # (logGroupName 1-512)
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    # https://docs.aws.amazon.com/lambda/latest/api/API_PublishLayerVersion.html (LayerName 1-140)
    ("AWS::Serverless::LayerVersion", "LayerName"): 140,
    ("AWS::Lambda::LayerVersion", "LayerName"): 140,
    # https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html (FunctionName 1-64)
    ("AWS::Serverless::Function", "FunctionName"): 64,
    ("AWS::Lambda::Function", "FunctionName"): 64,
    # SAM ScheduleV2 -> AWS::Scheduler::Schedule Name;
    # https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html (Name 1-64)
    ("AWS::Serverless::Function", "Events.*.Properties.Name"): 64,
    ("AWS::Scheduler::Schedule", "Name"): 64,
    # https://docs.aws.amazon.com/xray/latest/api/API_SamplingRule.html (RuleName 1-32)
    ("AWS::XRay::SamplingRule", "SamplingRule.RuleName"): 32,
    # https://docs.aws.amazon.com/waf/latest/APIReference/API_CreateWebACL.html (Name 1-128),
    # https://docs.aws.amazon.com/waf/latest/APIReference/API_VisibilityConfig.html
    # (MetricName 1-128)
    ("AWS::WAFv2::WebACL", "Name"): 128,
    ("AWS::WAFv2::WebACL", "VisibilityConfig.MetricName"): 128,
    ("AWS::WAFv2::WebACL", "Rules.*.VisibilityConfig.MetricName"): 128,
    # https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_CreateFunction.html (Name 1-64)
    ("AWS::CloudFront::Function", "Name"): 64,
    # https://docs.aws.amazon.com/sns/latest/api/API_SetTopicAttributes.html (DisplayName: at
    # most 100 characters)
    ("AWS::SNS::Topic", "DisplayName"): 100,
    # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RegisterTaskDefinition.html
    # (family: up to 255 letters, numbers, hyphens, underscores)
    ("AWS::ECS::TaskDefinition", "Family"): 255,
    # https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html
    # (PolicyName 1-256)
    ("AWS::ApplicationAutoScaling::ScalingPolicy", "PolicyName"): 256,
    # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBCluster.html
    # (DatabaseName, Aurora PostgreSQL: at most 63 characters)
    ("AWS::RDS::DBCluster", "DatabaseName"): 63,
    # https://docs.aws.amazon.com/apigateway/latest/api/API_CreateStage.html: stage names are
    # letters, digits, - and _, at most 128 characters.
    ("AWS::Serverless::Api", "StageName"): 128,
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html (PolicyName 1-128)
    ("AWS::IAM::Role", "Policies.*.PolicyName"): 128,
}
NAME_KEY = re.compile(r"(Name|Family)$")
# Keys that end in Name but name nothing this stack creates.
NOT_NAMES: dict[tuple[str, str], str] = {
    ("AWS::CloudFront::Distribution", "DistributionConfig.Origins.*.DomainName"): (
        "the origin's host name (the API's execute-api host)"
    ),
    ("Custom::LedgerMigrations", "DbName"): (
        "an input of the stack's own function: the database, bounded by DbName's AllowedPattern"
    ),
}


# ------------------------------------------------------------------ the environments ----
def samconfig_environments() -> dict[str, tuple[dict[str, str], str]]:
    """environment -> (its parameter_overrides, its region), as `sam deploy --config-env` reads."""
    config = tomllib.loads(SAMCONFIG_PATH.read_text(encoding="utf-8"))
    default_region = config["default"]["global"]["parameters"]["region"]
    environments: dict[str, tuple[dict[str, str], str]] = {}
    for name, env in config.items():
        if not isinstance(env, dict) or "deploy" not in env:
            continue
        text = env["deploy"]["parameters"].get("parameter_overrides", "")
        overrides = dict(item.split("=", 1) for item in shlex.split(text))
        region = env.get("global", {}).get("parameters", {}).get("region", default_region)
        environments[name] = (overrides, region)
    return environments


ENVIRONMENTS = samconfig_environments()
CASES = [
    (env, region, mode)
    for env in sorted(ENVIRONMENTS)
    for region in REGIONS
    for mode in NETWORK_MODES
]
CASE_IDS = [f"{env}-{region}-{mode}" for env, region, mode in CASES]


@cache
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def parameters_for(env: str, mode: str) -> dict[str, str]:
    declared: Mapping[str, Any] = template().get("Parameters") or {}
    overrides = dict(ENVIRONMENTS[env][0])
    for name, spec in declared.items():
        if "Default" not in spec and name not in overrides:
            overrides[name] = NO_DEFAULT_VALUES.get(name, "x")
    if "NetworkMode" in declared:
        overrides["NetworkMode"] = mode
    if mode == "existing":
        overrides.update({k: v for k, v in EXISTING_NETWORK.items() if k in declared})
    return overrides


@cache
def stack(env: str, region: str, mode: str) -> ResolvedStack:
    return resolve_template(
        template(),
        overrides=parameters_for(env, mode),
        region=region,
        account_id=ACCOUNT_ID,
        stack_name=LONGEST_STACK_NAME,
        stack_id=f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{LONGEST_STACK_NAME}/{STACK_UUID}",
    )


# ------------------------------------------------------------------------- helpers ----
def at_path(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """(concrete path, value) for each match of `path` ("*" = any index or key) in `value`."""
    if not path:
        yield "", value
        return
    head, rest = path[0], path[1:]
    if isinstance(value, list) and head == "*":
        items: list[tuple[str, Any]] = [(str(i), v) for i, v in enumerate(value)]
    elif isinstance(value, dict):
        items = (
            list(value.items()) if head == "*" else [(head, value[head])] if head in value else []
        )
    else:
        items = []
    for key, item in items:
        for sub, found in at_path(item, rest):
            yield (f"{key}.{sub}" if sub else key), found


def named_paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Generic paths ("*" for list indexes and SAM event names) of every key ending in Name or
    Family whose value is computed (an intrinsic), except pure references to other resources."""
    if isinstance(value, list):
        for item in value:
            yield from named_paths(item, (*prefix, "*"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("Fn::") or key == "Ref":
                continue
            step = "*" if prefix == ("Events",) else key
            if NAME_KEY.search(key) and isinstance(item, dict) and not is_reference(item):
                yield (*prefix, step)
            yield from named_paths(item, (*prefix, step))


def is_reference(value: Mapping[str, Any]) -> bool:
    resources = template()["Resources"]
    if "Fn::GetAtt" in value:
        return True
    return "Ref" in value and value["Ref"] in resources


def references(value: Any) -> set[str]:
    """Logical ids a resolved value refers to (ResourceRef objects and ${Id} in strings)."""
    found: set[str] = set()
    if isinstance(value, ResourceRef):
        found.add(value.logical_id)
    elif isinstance(value, str):
        found.update(m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z0-9.]+)\}", value))
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for item in value.values():
            found |= references(item)
    return found


def dependencies(resolved: ResolvedStack, logical_id: str) -> set[str]:
    """Everything CloudFormation creates before `logical_id` (refs and DependsOn, transitively)."""
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resolved.resources[todo.pop()]
        direct = references(resource["Properties"]) | references(resource["Metadata"])
        direct |= set(resource["DependsOn"])
        for dep in direct - seen:
            if dep in resolved.resources:
                seen.add(dep)
                todo.append(dep)
    return seen


def of_type(resolved: ResolvedStack, kind: str) -> dict[str, Mapping[str, Any]]:
    return {lid: res for lid, res in resolved.resources.items() if res["Type"] == kind}


# ---------------------------------------------------------------------- the checks ----
@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_auto_pause_only_with_zero_minimum_capacity(env: str, region: str, mode: str) -> None:
    clusters = of_type(stack(env, region, mode), "AWS::RDS::DBCluster")
    assert clusters
    for lid, cluster in clusters.items():
        scaling = cluster["Properties"].get("ServerlessV2ScalingConfiguration", {})
        if "SecondsUntilAutoPause" in scaling:
            assert float(scaling["MinCapacity"]) == 0, (
                f"{lid}: SecondsUntilAutoPause with MinCapacity {scaling['MinCapacity']} "
                "(CloudFormation accepts it only at 0 ACU)"
            )


def test_named_properties_are_in_the_limits_table() -> None:
    missing = sorted(
        f"{res['Type']} {'.'.join(path)} ({lid})"
        for lid, res in template()["Resources"].items()
        for path in named_paths(res.get("Properties") or {})
        if (res["Type"], ".".join(path)) not in set(NAME_LIMITS) | set(NOT_NAMES)
    )
    assert not missing, f"look up each name's limit and add it to NAME_LIMITS: {missing}"


@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_names_fit_with_the_longest_stack_name(env: str, region: str, mode: str) -> None:
    resolved = stack(env, region, mode)
    too_long: list[str] = []
    for lid, res in resolved.resources.items():
        for (kind, path), limit in NAME_LIMITS.items():
            if kind != res["Type"]:
                continue
            for where, name in at_path(res["Properties"], tuple(path.split("."))):
                assert isinstance(name, str), f"{lid}.{where}: {name!r} is not a string"
                assert "${" not in name, f"{lid}.{where}: {name} refers to a resource"
                if len(name) > limit:
                    too_long.append(f"{lid}.{where}: {len(name)} > {limit} ({name})")
    assert not too_long, too_long


@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_schedules_are_named_per_stack(env: str, region: str, mode: str) -> None:
    """SAM names a ScheduleV2 schedule after its event's logical id unless told otherwise, and
    schedule names are unique per account and region: a second stack would clash."""
    for lid, res in of_type(stack(env, region, mode), "AWS::Serverless::Function").items():
        for event_name, event in (res["Properties"].get("Events") or {}).items():
            if event["Type"] != "ScheduleV2":
                continue
            props = event["Properties"]
            assert props.get("OmitName") is True or LONGEST_STACK_NAME in props.get("Name", ""), (
                f"{lid}.{event_name}: set OmitName: true (or a Name unique to the stack)"
            )


@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_no_reserved_concurrency(env: str, region: str, mode: str) -> None:
    """A new account's concurrency quota is 10, and Lambda keeps 10 unreserved: any reserved
    concurrency fails to create there."""
    globals_fn = (template().get("Globals") or {}).get("Function") or {}
    assert "ReservedConcurrentExecutions" not in globals_fn
    for lid, res in stack(env, region, mode).resources.items():
        if res["Type"] in {"AWS::Serverless::Function", "AWS::Lambda::Function"}:
            reserved = res["Properties"].get("ReservedConcurrentExecutions")
            assert reserved is None, f"{lid}: ReservedConcurrentExecutions {reserved}"


# Every resource type the stack creates, and which roles it needs beyond those this stack
# makes. Service-linked roles are made by the service itself the first time it needs them, in
# any account (the deployer needs iam:CreateServiceLinkedRole, which AdministratorAccess has).
ASSUMED_ROLES: dict[str, str] = {
    "AWS::ECS::Cluster": "AWSServiceRoleForECS, created by ECS on first use (ECS developer guide, "
    "using-service-linked-roles)",
    "AWS::ECS::Service": "AWSServiceRoleForECS, as the cluster",
    "AWS::ApplicationAutoScaling::ScalableTarget": "no RoleARN: "
    "AWSServiceRoleForApplicationAutoScaling_ECSService, created by RegisterScalableTarget",
    "AWS::RDS::DBCluster": "AWSServiceRoleForRDS, created by RDS with the first cluster",
    "AWS::RDS::DBInstance": "AWSServiceRoleForRDS, as the cluster",
    "AWS::WAFv2::LoggingConfiguration": "AWSServiceRoleForWAFV2Logging, created by "
    "PutLoggingConfiguration",
    "AWS::EC2::NatGateway": "none (no role)",
    "AWS::ApiGateway::Account": "CloudWatchRoleArn: checked to be this stack's role below",
}
NO_ROLE_TYPES = frozenset(
    {
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::CloudFormation::WaitConditionHandle",
        "AWS::CloudFront::Distribution",
        "AWS::CloudFront::Function",
        "AWS::CloudWatch::Alarm",
        "AWS::Cognito::UserPool",  # no SMS factor: no SNS role (MfaConfiguration TOTP only)
        "AWS::Cognito::UserPoolClient",
        "AWS::DynamoDB::Table",
        "AWS::EC2::EIP",
        "AWS::EC2::FlowLog",  # DeliverLogsPermissionArn: checked with the role properties
        "AWS::EC2::InternetGateway",
        "AWS::EC2::Route",
        "AWS::EC2::RouteTable",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::Subnet",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::VPC",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::ECS::TaskDefinition",  # ExecutionRoleArn/TaskRoleArn: checked below
        "AWS::IAM::Role",
        "AWS::KMS::Alias",
        "AWS::KMS::Key",
        "AWS::Lambda::Permission",
        "AWS::Logs::LogGroup",
        "AWS::Logs::MetricFilter",
        "AWS::RDS::DBSubnetGroup",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::SNS::Subscription",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::SecretsManager::Secret",
        "AWS::Serverless::Api",
        "AWS::Serverless::Function",  # SAM creates each function's role (and its schedules')
        "AWS::Serverless::LayerVersion",
        "AWS::Serverless::StateMachine",  # SAM creates its role
        "AWS::WAFv2::WebACL",
        "AWS::WAFv2::WebACLAssociation",
        "AWS::XRay::SamplingRule",
    }
)
ROLE_KEYS = frozenset(
    {
        "Role",
        "RoleArn",
        "RoleARN",
        "ExecutionRoleArn",
        "TaskRoleArn",
        "CloudWatchRoleArn",
        "DeliverLogsPermissionArn",
        "ServiceRole",
        "ServiceRoleArn",
    }
)
# AWS managed policies the stack attaches (they exist in every account).
AWS_MANAGED_POLICIES = frozenset(
    {
        "service-role/AmazonAPIGatewayPushToCloudWatchLogs",
        "service-role/AmazonECSTaskExecutionRolePolicy",
    }
)


def role_values(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, item in value.items():
            yield from role_values(item, k)
    elif isinstance(value, list):
        for item in value:
            yield from role_values(item, key)
    elif key in ROLE_KEYS:
        yield key, value


@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_roles_the_stack_assumes_exist(env: str, region: str, mode: str) -> None:
    resolved = stack(env, region, mode)
    for lid, res in resolved.resources.items():
        kind = res["Type"]
        if kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource":
            token = res["Properties"]["ServiceToken"]
            assert isinstance(token, ResourceRef) and token.logical_id in resolved.resources, (
                f"{lid}: its ServiceToken is not a function of this stack"
            )
            continue
        assert kind in ASSUMED_ROLES or kind in NO_ROLE_TYPES, (
            f"{lid}: {kind} is new here; say in ASSUMED_ROLES which roles it needs"
        )
        for key, value in role_values(res["Properties"]):
            assert isinstance(value, ResourceRef), f"{lid}.{key}: {value!r} is not this stack's"
            target = resolved.resources.get(value.logical_id)
            assert target is not None and target["Type"] == "AWS::IAM::Role", (
                f"{lid}.{key}: {value} is not a role this stack creates (in this environment)"
            )
        for arn in res["Properties"].get("ManagedPolicyArns") or []:
            prefix = "arn:aws:iam::aws:policy/"
            assert str(arn).startswith(prefix), f"{lid}: {arn} is not an AWS managed policy"
            assert str(arn).removeprefix(prefix) in AWS_MANAGED_POLICIES, f"{lid}: {arn}"
    scalable = of_type(resolved, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert all("RoleARN" not in t["Properties"] for t in scalable.values())


@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_api_gateway_logging_role_is_set_by_every_environment(
    env: str, region: str, mode: str
) -> None:
    """AWS::ApiGateway::Account is one setting per account and region: each stack sets its own
    role and retains it, so deleting one stack never leaves the setting on a deleted role."""
    resolved = stack(env, region, mode)
    accounts = of_type(resolved, "AWS::ApiGateway::Account")
    assert len(accounts) == 1, f"{env}: the stack does not set API Gateway's CloudWatch role"
    ((account_id, account),) = accounts.items()
    role = account["Properties"]["CloudWatchRoleArn"]
    assert isinstance(role, ResourceRef)
    role_resource = resolved.resources[role.logical_id]
    assert role_resource.get("DeletionPolicy") == "Retain"
    assert role_resource.get("UpdateReplacePolicy") == "Retain"
    for api_id in of_type(resolved, "AWS::Serverless::Api"):
        assert account_id in dependencies(resolved, api_id), (
            f"{api_id}'s stage logging is created before {account_id} sets the role"
        )


@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_worker_has_a_route_out(env: str, region: str, mode: str) -> None:
    """The worker reaches the prefeituras (internet hosts): a public IP in a subnet routed to an
    internet gateway, or a private subnet routed to a NAT gateway in such a subnet, or (existing
    mode) the user's subnets, documented to need a NAT. ProcessorFn's ENIs never get a public IP:
    never in a subnet without a NAT route."""
    resolved = stack(env, region, mode)
    ((service_id, service),) = of_type(resolved, "AWS::ECS::Service").items()
    network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    public_ip = network.get("AssignPublicIp") == "ENABLED"
    before_service = dependencies(resolved, service_id)
    for subnet in network["Subnets"]:
        route = route_out(resolved, subnet)
        if route == "parameter":
            continue
        kind, route_ids = route
        assert kind == "nat" or public_ip, f"{subnet} routes to an IGW but tasks get no public IP"
        missing = route_ids - before_service
        assert not missing, f"{service_id} may start before its route out exists: {missing}"
    for lid, fn in of_type(resolved, "AWS::Serverless::Function").items():
        for subnet in (fn["Properties"].get("VpcConfig") or {}).get("SubnetIds", []):
            route = route_out(resolved, subnet)
            assert route == "parameter" or route[0] == "nat", (
                f"{lid} in {subnet}: a Lambda ENI has no public IP, it needs a NAT route"
            )


def route_out(resolved: ResolvedStack, subnet: Any) -> tuple[str, set[str]] | str:
    """("igw" | "nat", the route resources) for a subnet this stack makes; "parameter" for one
    the user gives, which only NetworkMode existing may do (documented: it must have a NAT)."""
    if not isinstance(subnet, ResourceRef):
        assert resolved.parameters.get("NetworkMode") == "existing", (
            f"subnet {subnet} comes from a parameter outside NetworkMode existing: nothing in the "
            "stack gives it a route out"
        )
        subnets_doc = str(template()["Parameters"]["SubnetIds"].get("Description", ""))
        assert "NAT" in subnets_doc, "SubnetIds must say the subnets need a NAT route"
        return "parameter"
    associations = [
        (lid, a["Properties"]["RouteTableId"])
        for lid, a in of_type(resolved, "AWS::EC2::SubnetRouteTableAssociation").items()
        if a["Properties"]["SubnetId"] == subnet
    ]
    assert len(associations) == 1, f"{subnet} has no route table of the stack's"
    ((association_id, table),) = associations
    defaults = [
        (lid, r["Properties"])
        for lid, r in of_type(resolved, "AWS::EC2::Route").items()
        if r["Properties"]["RouteTableId"] == table
        and r["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"
    ]
    assert len(defaults) == 1, f"{subnet}: no default route in {table}"
    ((route_id, route),) = defaults
    if "GatewayId" in route:
        gateway = route["GatewayId"]
        attached = [
            a
            for a in of_type(resolved, "AWS::EC2::VPCGatewayAttachment").values()
            if a["Properties"]["InternetGatewayId"] == gateway
        ]
        assert attached, f"{gateway} is not attached to the VPC"
        return "igw", {association_id, route_id}
    nat = route["NatGatewayId"]
    assert isinstance(nat, ResourceRef), f"{subnet}: NAT {nat} is not this stack's"
    nat_subnet = resolved.resources[nat.logical_id]["Properties"]["SubnetId"]
    assert route_out(resolved, nat_subnet)[0] == "igw", f"{nat} is not in a public subnet"
    return "nat", {association_id, route_id}


@pytest.mark.parametrize(("env", "region", "mode"), CASES, ids=CASE_IDS)
def test_created_subnets_span_two_availability_zones(env: str, region: str, mode: str) -> None:
    resolved = stack(env, region, mode)
    for lid, group in of_type(resolved, "AWS::RDS::DBSubnetGroup").items():
        subnets = group["Properties"]["SubnetIds"]
        zones = {
            resolved.resources[s.logical_id]["Properties"]["AvailabilityZone"]
            for s in subnets
            if isinstance(s, ResourceRef)
        }
        assert all(isinstance(s, ResourceRef) for s in subnets) or mode == "existing"
        assert mode == "existing" or len(zones) == 2, f"{lid}: {zones}"
        assert all(zone.startswith(region) for zone in zones)


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_existing_network_mode_requires_vpc_and_subnets(env: str) -> None:
    """CloudFormation's Rules refuse NetworkMode existing without VpcId or SubnetIds before
    creating anything; the other modes need neither."""
    overrides = parameters_for(env, "existing")
    base = {k: v for k, v in overrides.items() if k not in EXISTING_NETWORK}
    given = Resolver.for_template(
        template(), overrides=overrides, region="sa-east-1", account_id=ACCOUNT_ID, stack_name="s"
    )
    assert given.rule_failures() == []
    for missing in EXISTING_NETWORK:
        partial = base | {k: v for k, v in EXISTING_NETWORK.items() if k != missing}
        resolver = Resolver.for_template(
            template(), overrides=partial, region="sa-east-1", account_id=ACCOUNT_ID, stack_name="s"
        )
        failures = resolver.rule_failures()
        assert any(missing in failure for failure in failures), (missing, failures)
    for mode in ("public", "nat"):
        resolver = Resolver.for_template(
            template(),
            overrides=base | {"NetworkMode": mode},
            region="sa-east-1",
            account_id=ACCOUNT_ID,
            stack_name="s",
        )
        assert resolver.rule_failures() == []


def test_samconfig_deploys_to_sao_paulo() -> None:
    """LGPD: Brazilian taxpayer data stays in Brazil; every environment deploys to sa-east-1."""
    assert ENVIRONMENTS
    assert {region for _, region in ENVIRONMENTS.values()} == {"sa-east-1"}


# ------------------------------------------------------------- the resolver itself ----
RESOLVER_TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "Mode": {"Type": "String", "Default": "a"},
        "Ids": {"Type": "CommaDelimitedList", "Default": ""},
    },
    "Conditions": {"IsA": {"Fn::Equals": [{"Ref": "Mode"}, "a"]}},
    "Rules": {
        "NeedIds": {
            "RuleCondition": {"Fn::Not": [{"Condition": "IsA"}]},
            "Assertions": [
                {
                    "Assert": {"Fn::Not": [{"Fn::Contains": [{"Ref": "Ids"}, ""]}]},
                    "AssertDescription": "Ids needed",
                }
            ],
        }
    },
    "Resources": {
        "Net": {"Type": "AWS::EC2::VPC", "Condition": "IsA", "Properties": {}},
        "Sub": {
            "Type": "AWS::EC2::Subnet",
            "DependsOn": "Net",
            "Properties": {
                "VpcId": {"Fn::If": ["IsA", {"Ref": "Net"}, {"Ref": "AWS::NoValue"}]},
                "AvailabilityZone": {"Fn::Select": [1, {"Fn::GetAZs": ""}]},
                "CidrBlock": {"Fn::Select": [3, {"Fn::Cidr": ["10.1.0.0/16", 4, 8]}]},
                "Tag": {"Fn::Sub": "${AWS::StackName}-${Net.CidrBlock}"},
                "Short": {
                    "Fn::Select": [
                        0,
                        {
                            "Fn::Split": [
                                "-",
                                {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]},
                            ]
                        },
                    ]
                },
            },
        },
    },
}


def resolve_small(mode: str, ids: str = "") -> ResolvedStack:
    return resolve_template(
        RESOLVER_TEMPLATE,
        overrides={"Mode": mode, "Ids": ids},
        region="sa-east-1",
        account_id=ACCOUNT_ID,
        stack_name="st",
        stack_id=f"arn:aws:cloudformation:sa-east-1:{ACCOUNT_ID}:stack/st/{STACK_UUID}",
    )


def test_resolver_evaluates_conditions_and_leaves_resources_symbolic() -> None:
    resolved = resolve_small("a")
    props = resolved.resources["Sub"]["Properties"]
    assert props["VpcId"] == ResourceRef("Net")
    assert props["AvailabilityZone"] == "sa-east-1b"
    assert props["CidrBlock"] == "10.1.3.0/24"
    assert props["Tag"] == "st-${Net.CidrBlock}"
    assert props["Short"] == STACK_UUID.split("-", maxsplit=1)[0]
    assert resolved.resources["Sub"]["DependsOn"] == ["Net"]
    assert resolved.conditions == {"IsA": True}
    assert resolved.rule_failures == ()


def test_resolver_drops_disabled_resources_and_no_value() -> None:
    resolved = resolve_small("b")
    assert "Net" not in resolved.resources
    assert "VpcId" not in resolved.resources["Sub"]["Properties"]
    assert resolved.rule_failures == ("NeedIds: Ids needed",)
    assert resolve_small("b", "subnet-1,subnet-2").rule_failures == ()
