"""Create in moto (in-process or server) the resources template.yaml declares, from the template.

Resources are found by Type, not by a list kept here: a table, bucket or queue added to the
template appears locally too. Supported types: AWS::KMS::Key, AWS::DynamoDB::Table,
AWS::S3::Bucket, AWS::SQS::Queue, AWS::Serverless::StateMachine / AWS::StepFunctions::StateMachine
(the ASL file with DefinitionSubstitutions filled in, and an IAM role made for it),
AWS::Cognito::UserPool and AWS::Cognito::UserPoolClient. The rest of the template (functions,
API Gateway, ECS, Aurora, alarms, policies) has no local counterpart here: the local gateway
runs the handlers, the worker runs in-process, the ledger is SQLite or PostgreSQL.

Physical names are `{prefix}-{logical-id-in-kebab-case}` unless the template names the resource.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import boto3

from nfse_local.cfn import Resolver, Unresolvable, load_template, walk_refs

DEFAULT_TEMPLATE = Path("template.yaml")

# Logical ids the rest of the code base knows by name (docs/architecture.md).
API_FUNCTIONS = ("EmitFn", "GetFn")
PROCESSOR_FUNCTION = "ProcessorFn"
WORKER_TASK_DEFINITION = "WorkerTaskDefinition"


@dataclass(frozen=True)
class FunctionSpec:
    """A function of the template as the Lambda service would run it."""

    logical_id: str
    handler_ref: str  # "functions.emit.app:handler"
    timeout: float  # seconds (the function's Timeout, or Globals')
    memory: int  # MB
    # EventBridge Scheduler expressions of its enabled ScheduleV2 events, e.g. "rate(5 minutes)".
    schedules: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalResources:
    """What create_resources made: physical ids, and the environment each component expects."""

    invoices_table: str
    rps_counters_table: str
    tenants_table: str
    idempotency_table: str
    docs_bucket: str
    requests_queue_url: str
    dlq_url: str
    state_machine_arn: str
    user_pool_id: str
    user_pool_client_id: str
    kms_key_id: str
    region: str
    endpoint_url: str | None = None
    # Every created resource: logical id -> what Ref gives (name, URL, ARN or id).
    physical_ids: Mapping[str, str] = field(default_factory=dict)
    # Resolved environment of every function and container of the template.
    environments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Variables left out of `environments` because they name something not emulated locally
    # (the Aurora cluster and its secret: the local ledger is SQLite/PostgreSQL instead).
    not_emulated: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Every AWS::Serverless::Function: handler, Timeout, memory, schedules.
    functions: Mapping[str, FunctionSpec] = field(default_factory=dict)

    def _client_env(self) -> dict[str, str]:
        if self.endpoint_url is None:
            return {}
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_DEFAULT_REGION": self.region}

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The function's own Environment.Variables (not Globals), resolved to local resources;
        plus AWS_ENDPOINT_URL/AWS_DEFAULT_REGION when the resources live in a moto server."""
        try:
            env = dict(self.environments[logical_id])
        except KeyError:
            raise KeyError(f"{logical_id} is not a function or container of the template") from None
        return env | self._client_env()

    def api_env(self) -> dict[str, str]:
        """What EmitFn and GetFn read (ApiSettings / QuerySettings aliases), merged."""
        env: dict[str, str] = {}
        for name in API_FUNCTIONS:
            missing = self.not_emulated.get(name)
            if missing:
                raise Unresolvable(f"{name} needs {missing}, which the local stack lacks")
            env |= self.function_env(name)
        return env

    def local_api_env(self) -> dict[str, str]:
        """api_env as the local stack runs EmitFn: the simulators answer for every
        municipality (PROVIDER_ENDPOINT_OVERRIDE, nfse_local.fidelity), so none is refused for
        lack of a registry entry. The URL is the shipped simulator entry's; EmitFn never calls
        it."""
        from nfse_core.providers.registry import load_default_data  # noqa: PLC0415 - local only

        simulator = load_default_data()[1]
        return self.api_env() | {
            "PROVIDER_ENDPOINT_OVERRIDE": simulator.endpoints.homologacao or ""
        }

    def processor_env(self) -> dict[str, str]:
        """ProcessorFn's environment without DB_CLUSTER_ARN/DB_SECRET_ARN (see not_emulated)."""
        return self.function_env(PROCESSOR_FUNCTION)

    def worker_env(self) -> dict[str, str]:
        """The worker container's environment without the Aurora variables (see not_emulated)."""
        return self.function_env(WORKER_TASK_DEFINITION)


def create_resources(
    session: boto3.session.Session,
    *,
    template_path: Path = DEFAULT_TEMPLATE,
    endpoint_url: str | None = None,
    prefix: str = "nfse",
    parameter_overrides: Mapping[str, str] | None = None,
) -> LocalResources:
    """Create every supported resource of `template_path` through `session` (moto).

    `parameter_overrides` set template parameters (e.g. {"MaxReceiveCount": "2"}); the others
    take their defaults. `prefix` stands in for the stack name.
    """
    template = load_template(template_path)
    region = session.region_name or "us-east-1"
    builder = _Builder(session, endpoint_url, template_path.parent)
    account_id = builder.client("sts").get_caller_identity()["Account"]
    resolver = Resolver.for_template(
        template,
        overrides=parameter_overrides,
        region=region,
        account_id=account_id,
        stack_name=prefix,
    )
    resources: Mapping[str, Any] = template["Resources"]
    physical: dict[str, str] = {}
    for logical_id in _creation_order(resources):
        if not resolver.is_enabled(logical_id):
            continue
        resource = resources[logical_id]
        create = _CREATORS[resource["Type"]]
        name = _physical_name(prefix, logical_id)
        ref, attributes = create(builder, resolver, name, resource.get("Properties") or {})
        resolver.created(logical_id, ref, attributes)
        physical[logical_id] = str(ref)

    globals_env = ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    environments, not_emulated = _environments(
        resources, resolver, globals_env.get("Variables") or {}
    )
    functions = _function_specs(template, resolver)

    def ref_of(logical_id: str) -> str:
        try:
            return physical[logical_id]
        except KeyError:
            raise Unresolvable(f"template.yaml has no {logical_id} (or it is disabled)") from None

    return LocalResources(
        invoices_table=ref_of("InvoicesTable"),
        rps_counters_table=ref_of("RpsCountersTable"),
        tenants_table=ref_of("TenantsTable"),
        idempotency_table=ref_of("IdempotencyTable"),
        docs_bucket=ref_of("DocsBucket"),
        requests_queue_url=ref_of("RequestsQueue"),
        dlq_url=ref_of("RequestsDLQ"),
        state_machine_arn=ref_of("EmissionStateMachine"),
        user_pool_id=ref_of("UserPool"),
        user_pool_client_id=ref_of("UserPoolClient"),
        kms_key_id=ref_of("KmsKey"),
        region=region,
        endpoint_url=endpoint_url,
        physical_ids=MappingProxyType(physical),
        environments=MappingProxyType(environments),
        not_emulated=MappingProxyType(not_emulated),
        functions=MappingProxyType(functions),
    )


# ---------------------------------------------------------------------------- internals ----


@dataclass(frozen=True)
class _Builder:
    session: boto3.session.Session
    endpoint_url: str | None
    base_dir: Path
    _clients: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def client(self, service: str) -> Any:
        """One client per service for the whole creation (clients are thread-safe)."""
        if service not in self._clients:
            self._clients[service] = self.session.client(  # type: ignore[call-overload]
                service, endpoint_url=self.endpoint_url
            )
        return self._clients[service]


_Creator = Callable[[_Builder, Resolver, str, Mapping[str, Any]], tuple[str, dict[str, str]]]


def _physical_name(prefix: str, logical_id: str) -> str:
    kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", logical_id).lower()
    return f"{prefix}-{kebab}"


def _creation_order(resources: Mapping[str, Any]) -> list[str]:
    """Supported resources, each after the supported resources its properties refer to."""
    supported = [lid for lid, res in resources.items() if res.get("Type") in _CREATORS]
    wanted = set(supported)
    deps: dict[str, set[str]] = {}
    for lid in supported:
        res = resources[lid]
        depends = res.get("DependsOn") or []
        depends = [depends] if isinstance(depends, str) else depends
        refs = set(walk_refs(res.get("Properties") or {})) | set(depends)
        deps[lid] = (refs & wanted) - {lid}
    order: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(lid: str) -> None:
        if lid in done:
            return
        if lid in visiting:
            raise ValueError(f"template.yaml: circular reference through {lid}")
        visiting.add(lid)
        for dep in sorted(deps[lid]):
            visit(dep)
        visiting.discard(lid)
        done.add(lid)
        order.append(lid)

    for lid in supported:
        visit(lid)
    return order


def _pick(props: Mapping[str, Any], keys: tuple[str, ...], resolver: Resolver) -> dict[str, Any]:
    """The listed properties whose CloudFormation shape is the API's shape, resolved."""
    return {key: resolver.resolve(props[key]) for key in keys if key in props}


def _as_bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _kms_key(
    b: _Builder, r: Resolver, name: str, props: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    kms = b.client("kms")
    description = str(r.resolve(props.get("Description", name)))
    meta = kms.create_key(Description=description, KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    if _as_bool(r.resolve(props.get("EnableKeyRotation", False))):
        kms.enable_key_rotation(KeyId=meta["KeyId"])
    return meta["KeyId"], {"Arn": meta["Arn"], "KeyId": meta["KeyId"]}


_TABLE_KEYS = (
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "ProvisionedThroughput",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
)


def _dynamodb_table(
    b: _Builder, r: Resolver, name: str, props: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    ddb = b.client("dynamodb")
    table_name = str(r.resolve(props.get("TableName", name)))
    args = _pick(props, _TABLE_KEYS, r)
    sse = r.resolve(props.get("SSESpecification") or {})
    if sse:
        args["SSESpecification"] = {
            "Enabled": _as_bool(sse.get("SSEEnabled", False)),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    description = ddb.create_table(TableName=table_name, **args)["TableDescription"]
    ttl = r.resolve(props.get("TimeToLiveSpecification") or {})
    if ttl and _as_bool(ttl.get("Enabled", False)):
        ddb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    pitr = r.resolve(props.get("PointInTimeRecoverySpecification") or {})
    if pitr and _as_bool(pitr.get("PointInTimeRecoveryEnabled", False)):
        ddb.update_continuous_backups(
            TableName=table_name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    attributes = {"Arn": description["TableArn"]}
    if "LatestStreamArn" in description:
        attributes["StreamArn"] = description["LatestStreamArn"]
    return table_name, attributes


def _s3_bucket(
    b: _Builder, r: Resolver, name: str, props: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    s3 = b.client("s3")
    bucket = str(r.resolve(props.get("BucketName", name))).lower()
    region = r.pseudo["AWS::Region"]
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    versioning = r.resolve(props.get("VersioningConfiguration") or {})
    if versioning:
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": versioning["Status"]}
        )
    encryption = r.resolve(props.get("BucketEncryption") or {})
    if encryption:
        # CloudFormation says ServerSideEncryptionByDefault where the API says Apply...
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                **(
                    {"BucketKeyEnabled": _as_bool(rule["BucketKeyEnabled"])}
                    if "BucketKeyEnabled" in rule
                    else {}
                ),
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    public = r.resolve(props.get("PublicAccessBlockConfiguration") or {})
    if public:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=public)
    return bucket, {
        "Arn": f"arn:aws:s3:::{bucket}",
        "DomainName": f"{bucket}.s3.amazonaws.com",
        "RegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
    }


_QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "DelaySeconds",
    "MaximumMessageSize",
    "SqsManagedSseEnabled",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
)


def _sqs_queue(
    b: _Builder, r: Resolver, name: str, props: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    sqs = b.client("sqs")
    attributes = {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in _pick(props, _QUEUE_ATTRIBUTES, r).items()
    }
    fifo = attributes.get("FifoQueue") == "true"
    queue_name = str(r.resolve(props.get("QueueName", name + (".fifo" if fifo else ""))))
    redrive = r.resolve(props.get("RedrivePolicy") or {})
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": redrive["deadLetterTargetArn"],
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
            }
        )
    url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, {"Arn": arn, "QueueName": queue_name, "QueueUrl": url}


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def state_machine_definition(
    props: Mapping[str, Any], substitutions: Mapping[str, Any], base_dir: Path
) -> str:
    """The ASL text with DefinitionSubstitutions filled in; a placeholder left over is an error."""
    if "DefinitionUri" in props:
        text = (base_dir / str(props["DefinitionUri"])).read_text(encoding="utf-8")
    elif "Definition" in props:
        text = json.dumps(props["Definition"])
    elif "DefinitionString" in props:
        text = str(props["DefinitionString"])
    else:
        raise ValueError("state machine without DefinitionUri, Definition or DefinitionString")

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in substitutions:
            raise Unresolvable(f"ASL placeholder ${{{key}}} has no DefinitionSubstitutions entry")
        return str(substitutions[key])

    return _PLACEHOLDER.sub(replace, text)


_STATES_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "states.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _state_machine(
    b: _Builder, r: Resolver, name: str, props: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    substitutions = r.resolve(props.get("DefinitionSubstitutions") or {})
    definition = state_machine_definition(props, substitutions, b.base_dir)
    machine_name = str(r.resolve(props.get("Name", name)))
    role_arn = b.client("iam").create_role(
        RoleName=f"{machine_name}-role"[:64], AssumeRolePolicyDocument=_STATES_TRUST
    )["Role"]["Arn"]
    kind = str(r.resolve(props.get("Type", props.get("StateMachineType", "STANDARD"))))
    arn = b.client("stepfunctions").create_state_machine(
        name=machine_name, definition=definition, roleArn=role_arn, type=kind
    )["stateMachineArn"]
    return arn, {"Arn": arn, "Name": machine_name}


_USER_POOL_KEYS = (
    "Policies",
    "Schema",
    "AutoVerifiedAttributes",
    "AliasAttributes",
    "UsernameAttributes",
    "UsernameConfiguration",
    "AdminCreateUserConfig",
    "DeletionProtection",
)
# CloudFormation's EnabledMfas entry -> SetUserPoolMfaConfig's argument that turns it on.
_MFA_FACTORS = {"SOFTWARE_TOKEN_MFA": "SoftwareTokenMfaConfiguration"}


def _user_pool(
    b: _Builder, r: Resolver, name: str, props: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    idp = b.client("cognito-idp")
    pool_name = str(r.resolve(props.get("UserPoolName", name)))
    pool = idp.create_user_pool(PoolName=pool_name, **_pick(props, _USER_POOL_KEYS, r))["UserPool"]
    # MFA goes through SetUserPoolMfaConfig, as CloudFormation does: CreateUserPool has no
    # EnabledMfas, and a pool whose MfaConfiguration is not OFF needs a factor turned on.
    mfa = str(r.resolve(props.get("MfaConfiguration", "OFF")))
    factors = [str(f) for f in r.resolve(props.get("EnabledMfas") or [])]
    unsupported = sorted(set(factors) - set(_MFA_FACTORS))
    if unsupported:
        raise ValueError(f"user pool {pool_name}: no local support for EnabledMfas {unsupported}")
    if mfa != "OFF" or factors:
        idp.set_user_pool_mfa_config(
            UserPoolId=pool["Id"],
            MfaConfiguration=mfa,
            **{_MFA_FACTORS[factor]: {"Enabled": True} for factor in factors},
        )
    region = r.pseudo["AWS::Region"]
    return pool["Id"], {
        "Arn": pool["Arn"],
        "ProviderName": f"cognito-idp.{region}.amazonaws.com/{pool['Id']}",
        "UserPoolId": pool["Id"],
    }


_CLIENT_KEYS = (
    "GenerateSecret",
    "ExplicitAuthFlows",
    "PreventUserExistenceErrors",
    "ReadAttributes",
    "WriteAttributes",
    "IdTokenValidity",
    "AccessTokenValidity",
    "RefreshTokenValidity",
    "TokenValidityUnits",
)


def _user_pool_client(
    b: _Builder, r: Resolver, name: str, props: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    args = _pick(props, _CLIENT_KEYS, r)
    for key in ("IdTokenValidity", "AccessTokenValidity", "RefreshTokenValidity"):
        if key in args:
            args[key] = int(args[key])
    if "GenerateSecret" in args:
        args["GenerateSecret"] = _as_bool(args["GenerateSecret"])
    client = b.client("cognito-idp").create_user_pool_client(
        UserPoolId=str(r.resolve(props["UserPoolId"])),
        ClientName=str(r.resolve(props.get("ClientName", name))),
        **args,
    )["UserPoolClient"]
    return client["ClientId"], {"ClientId": client["ClientId"], "Name": client["ClientName"]}


_CREATORS: dict[str, _Creator] = {
    "AWS::KMS::Key": _kms_key,
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::S3::Bucket": _s3_bucket,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::Serverless::StateMachine": _state_machine,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::Cognito::UserPool": _user_pool,
    "AWS::Cognito::UserPoolClient": _user_pool_client,
}


def _function_specs(template: Mapping[str, Any], resolver: Resolver) -> dict[str, FunctionSpec]:
    defaults = (template.get("Globals") or {}).get("Function") or {}
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        code_uri, handler = str(props["CodeUri"]), str(props["Handler"])
        package = ".".join(part for part in code_uri.strip("./").split("/") if part)
        module, attr = handler.rsplit(".", 1)
        schedules = []
        for event in (props.get("Events") or {}).values():
            if event.get("Type") not in {"ScheduleV2", "Schedule"}:
                continue
            event_props = event.get("Properties") or {}
            state = str(resolver.resolve(event_props.get("State", "ENABLED")))
            enabled = resolver.resolve(event_props.get("Enabled", True))
            if state == "ENABLED" and _as_bool(enabled):
                schedules.append(str(resolver.resolve(event_props["ScheduleExpression"])))
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            handler_ref=f"{package}.{module}:{attr}",
            timeout=float(resolver.resolve(props.get("Timeout", defaults.get("Timeout", 3)))),
            memory=int(resolver.resolve(props.get("MemorySize", defaults.get("MemorySize", 128)))),
            schedules=tuple(schedules),
        )
    return specs


def _environments(
    resources: Mapping[str, Any],
    resolver: Resolver,
    globals_env: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Mapping[str, str]], dict[str, tuple[str, ...]]]:
    """Each function's environment (Globals' variables under its own) and each container's
    Environment, resolved. A variable that names a resource the local stack lacks is left out
    and listed instead.
    """
    raw: dict[str, dict[str, Any]] = {}
    for logical_id, resource in resources.items():
        props = resource.get("Properties") or {}
        if resource.get("Type") in {"AWS::Serverless::Function", "AWS::Lambda::Function"}:
            raw[logical_id] = dict(globals_env or {}) | dict(
                (props.get("Environment") or {}).get("Variables") or {}
            )
        elif resource.get("Type") == "AWS::ECS::TaskDefinition":
            for container in props.get("ContainerDefinitions") or []:
                env = {
                    item["Name"]: item.get("Value", "")
                    for item in container.get("Environment") or []
                }
                # One container per task definition here; a second one gets its own key.
                key = logical_id if logical_id not in raw else f"{logical_id}/{container['Name']}"
                raw[key] = env
    environments: dict[str, Mapping[str, str]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    for key, variables in raw.items():
        resolved: dict[str, str] = {}
        lacking: list[str] = []
        for name, value in variables.items():
            try:
                resolved[name] = str(resolver.resolve(value))
            except Unresolvable:
                lacking.append(name)
        environments[key] = MappingProxyType(resolved)
        if lacking:
            missing[key] = tuple(lacking)
    return environments, missing
