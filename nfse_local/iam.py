"""Each component of the local stack runs with its own role's permissions, read from template.yaml.

In AWS every component (a function, the state machine, the worker's ECS task) calls AWS with
the credentials of its role, and IAM refuses what the role's policies do not allow. moto gives
every caller the same all-powerful dummy credentials, so a missing permission never fails
locally. This module closes that gap:

- `template_principals` computes, for every principal of the template, the identity policy
  documents AWS would evaluate, resolved to the resources the local stack created
  (`nfse_local.resources.create_resources`). Principals are found by type, never listed here:
  every AWS::Serverless::Function and AWS::Serverless::StateMachine (their `Policies`: SAM policy
  templates and inline `Statement` documents, or the template role named by `Role`), every
  AWS::Lambda::Function / AWS::StepFunctions::StateMachine (their template role), and every
  AWS::IAM::Role that carries inline policies (its `Policies`, and the AWS::IAM::Policy /
  AWS::IAM::ManagedPolicy resources attached to it).
- `LocalIam` makes one IAM user per principal in moto, with those documents as inline policies
  and an access key, plus an `admin` user (Allow */*) for the harness. With
  `nfse_local.moto_patches.iam_enforced()` moto then checks each request against the caller's
  policies, and `moto_patches.aws_iam_parity()` makes that check behave like AWS's.

SAM policy templates expand to the statements SAM generates (actions and resource patterns, as
in SAM's `policy_templates.json`); `SAM_POLICY_TEMPLATES` is the single table of them, also read
by the static IAM map (nfse_local.iam_map). A template this table does not know is an error.

Left out on purpose, each listed in `Principal.left_out`:
- AWS managed policies (AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess,
  AWSLambdaVPCAccessExecutionRole, AmazonECSTaskExecutionRolePolicy, ...): they grant CloudWatch
  Logs, X-Ray, ENI and ECR calls, none of which the local stack emulates. Any other managed
  policy is an error, since leaving it out could refuse a call AWS allows.
- Allow statements (or single resources of them) on template resources the local stack does not
  create (the Aurora cluster and its secret: the local ledger is SQLite or PostgreSQL). Nothing
  local could use them; dropping them narrows, never widens. In a Deny, a NotResource or a
  Condition such a value would widen, so it is an error there.
- What SAM adds for event sources, DeadLetterQueue, Connectors or deployment preferences: the
  local harness invokes the handlers itself, and the template uses none of the others.

Everything else is resolved with nfse_local.cfn's Resolver (parameters, pseudo parameters,
conditions, the Ref and attributes of created resources); a value it cannot resolve is an error
(`UnresolvablePolicy`), never a silent "*".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import boto3

from nfse_local.cfn import Resolver, Unresolvable, load_template, walk_refs
from nfse_local.resources import DEFAULT_TEMPLATE, LocalResources

PolicyDocument = dict[str, Any]
Credentials = dict[str, str]
PrincipalKind = Literal["function", "state-machine", "role"]

POLICY_VERSION = "2012-10-17"
ADMIN_USER = "admin"
ADMIN_POLICY: PolicyDocument = {
    "Version": POLICY_VERSION,
    "Statement": [{"Sid": "Harness", "Effect": "Allow", "Action": "*", "Resource": "*"}],
}


class UnresolvablePolicy(Unresolvable):
    """A policy of the template cannot be resolved for the local stack without widening it."""


# ------------------------------------------------------------------ SAM policy templates ----


@dataclass(frozen=True)
class SamStatement:
    """One Allow statement of a SAM policy template. Resource patterns are str.format strings
    over `partition`, `region`, `account` and the template's parameters."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]


@dataclass(frozen=True)
class SamPolicyTemplate:
    parameters: tuple[str, ...]
    statements: tuple[SamStatement, ...]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(action for statement in self.statements for action in statement.actions)


_TABLE = "arn:{partition}:dynamodb:{region}:{account}:table/{TableName}"
_TABLE_AND_INDEXES = (_TABLE, _TABLE + "/index/*")
_QUEUE = ("arn:{partition}:sqs:{region}:{account}:{QueueName}",)
_BUCKET_AND_OBJECTS = ("arn:{partition}:s3:::{BucketName}", "arn:{partition}:s3:::{BucketName}/*")

# The SAM policy templates the platform's templates use (or used), as SAM expands them
# (samtranslator/policy_templates_data/policy_templates.json). Add one here, from that file,
# before the template uses it.
SAM_POLICY_TEMPLATES: Mapping[str, SamPolicyTemplate] = MappingProxyType(
    {
        "DynamoDBCrudPolicy": SamPolicyTemplate(
            ("TableName",),
            (
                SamStatement(
                    (
                        "dynamodb:GetItem",
                        "dynamodb:DeleteItem",
                        "dynamodb:PutItem",
                        "dynamodb:Scan",
                        "dynamodb:Query",
                        "dynamodb:UpdateItem",
                        "dynamodb:BatchWriteItem",
                        "dynamodb:BatchGetItem",
                        "dynamodb:DescribeTable",
                        "dynamodb:ConditionCheckItem",
                    ),
                    _TABLE_AND_INDEXES,
                ),
            ),
        ),
        "DynamoDBReadPolicy": SamPolicyTemplate(
            ("TableName",),
            (
                SamStatement(
                    (
                        "dynamodb:GetItem",
                        "dynamodb:Scan",
                        "dynamodb:Query",
                        "dynamodb:BatchGetItem",
                        "dynamodb:DescribeTable",
                    ),
                    _TABLE_AND_INDEXES,
                ),
            ),
        ),
        "DynamoDBWritePolicy": SamPolicyTemplate(
            ("TableName",),
            (
                SamStatement(
                    ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"),
                    _TABLE_AND_INDEXES,
                ),
            ),
        ),
        "SQSSendMessagePolicy": SamPolicyTemplate(
            ("QueueName",), (SamStatement(("sqs:SendMessage*",), _QUEUE),)
        ),
        "SQSPollerPolicy": SamPolicyTemplate(
            ("QueueName",),
            (
                SamStatement(
                    (
                        "sqs:ChangeMessageVisibility",
                        "sqs:ChangeMessageVisibilityBatch",
                        "sqs:DeleteMessage",
                        "sqs:DeleteMessageBatch",
                        "sqs:GetQueueAttributes",
                        "sqs:ReceiveMessage",
                    ),
                    _QUEUE,
                ),
            ),
        ),
        "S3ReadPolicy": SamPolicyTemplate(
            ("BucketName",),
            (
                SamStatement(
                    (
                        "s3:GetObject",
                        "s3:ListBucket",
                        "s3:GetBucketLocation",
                        "s3:GetObjectVersion",
                        "s3:GetLifecycleConfiguration",
                    ),
                    _BUCKET_AND_OBJECTS,
                ),
            ),
        ),
        "S3WritePolicy": SamPolicyTemplate(
            ("BucketName",),
            (
                SamStatement(
                    ("s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"),
                    _BUCKET_AND_OBJECTS,
                ),
            ),
        ),
        "StepFunctionsExecutionPolicy": SamPolicyTemplate(
            ("StateMachineName",),
            (
                SamStatement(
                    ("states:StartExecution",),
                    ("arn:{partition}:states:{region}:{account}:stateMachine:{StateMachineName}",),
                ),
            ),
        ),
        "AWSSecretsManagerGetSecretValuePolicy": SamPolicyTemplate(
            ("SecretArn",), (SamStatement(("secretsmanager:GetSecretValue",), ("{SecretArn}",)),)
        ),
    }
)

# Actions only, the shape nfse_local.iam_map.grants reads.
SAM_POLICY_ACTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {name: template.actions for name, template in SAM_POLICY_TEMPLATES.items()}
)

# AWS managed policies whose every grant is for something the local stack does not emulate
# (CloudWatch Logs, X-Ray, VPC ENIs, ECR image pulls).
NOT_EMULATED_MANAGED_POLICIES = frozenset(
    {
        "AWSLambdaBasicExecutionRole",
        "AWSXrayWriteOnlyAccess",
        "AWSXRayDaemonWriteAccess",
        "AWSLambdaVPCAccessExecutionRole",
        "AmazonECSTaskExecutionRolePolicy",
        "AmazonAPIGatewayPushToCloudWatchLogs",
        "CloudWatchLambdaInsightsExecutionRolePolicy",
    }
)


def sam_policy_templates_used(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """SAM policy template name -> the logical ids whose `Policies` use it."""
    used: dict[str, set[str]] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") not in _SAM_TYPES:
            continue
        for item in _policy_items((resource.get("Properties") or {}).get("Policies")):
            if isinstance(item, dict) and len(item) == 1 and not _is_intrinsic(item):
                ((name, _),) = item.items()
                if name != "Statement":
                    used.setdefault(str(name), set()).add(logical_id)
    return used


def expand_sam_policy_template(
    name: str, parameters: Mapping[str, Any], resolver: Resolver
) -> PolicyDocument:
    """The policy document SAM generates for `name` with these (already resolved) parameters."""
    try:
        template = SAM_POLICY_TEMPLATES[name]
    except KeyError:
        raise UnresolvablePolicy(
            f"SAM policy template {name} is not in nfse_local.iam.SAM_POLICY_TEMPLATES: add its "
            "statements from SAM's policy_templates.json"
        ) from None
    missing = set(template.parameters) - set(parameters)
    extra = set(parameters) - set(template.parameters)
    if missing or extra:
        raise UnresolvablePolicy(
            f"SAM policy template {name} takes {list(template.parameters)}, "
            f"got {sorted(parameters)}"
        )
    values = {
        "partition": resolver.pseudo["AWS::Partition"],
        "region": resolver.pseudo["AWS::Region"],
        "account": resolver.pseudo["AWS::AccountId"],
        **{key: str(value) for key, value in parameters.items()},
    }
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Action": list(statement.actions),
                "Resource": [pattern.format(**values) for pattern in statement.resources],
            }
            for statement in template.statements
        ],
    }


# ---------------------------------------------------------------------------- principals ----


@dataclass(frozen=True)
class Principal:
    """A caller of the template: its identity policies, resolved for the local stack."""

    logical_id: str
    kind: PrincipalKind
    documents: tuple[PolicyDocument, ...]
    # What was not turned into a local policy, and why (see the module docstring).
    left_out: tuple[str, ...] = ()
    # Label of each document (its SAM template, PolicyName or position), for the user's
    # inline policy names.
    labels: tuple[str, ...] = ()


_SAM_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Serverless::StateMachine"})
# Types that name a role of the template instead of carrying policies: their role property.
_ROLE_PROPERTY = {"AWS::Lambda::Function": "Role", "AWS::StepFunctions::StateMachine": "RoleArn"}
_KINDS: Mapping[str, PrincipalKind] = {
    "AWS::Serverless::Function": "function",
    "AWS::Serverless::StateMachine": "state-machine",
    "AWS::Lambda::Function": "function",
    "AWS::StepFunctions::StateMachine": "state-machine",
    "AWS::IAM::Role": "role",
}
_ATTACHED_POLICY_TYPES = frozenset({"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"})


def principal_ids(template: Mapping[str, Any]) -> list[str]:
    """Logical ids of the template's principals (before conditions), found by type."""
    resources: Mapping[str, Any] = template["Resources"]
    found = []
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        if kind in _KINDS and (
            kind != "AWS::IAM::Role" or _role_has_policies(template, logical_id)
        ):
            found.append(logical_id)
    return sorted(found)


def effective_policies(
    template: Mapping[str, Any], resolver: Resolver, *, emulated: Collection[str]
) -> dict[str, Principal]:
    """Every enabled principal of `template` with its identity policies, resolved.

    `emulated` are the logical ids the local stack created (LocalResources.physical_ids); an
    Allow on any other template resource is left out (and listed), see the module docstring.
    """
    builder = _PolicyBuilder(template, resolver, frozenset(emulated))
    principals: dict[str, Principal] = {}
    for logical_id in principal_ids(template):
        if resolver.is_enabled(logical_id):
            principals[logical_id] = builder.principal(logical_id)
    return principals


@dataclass
class _Collected:
    documents: list[PolicyDocument] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def add(self, label: str, document: PolicyDocument | None) -> None:
        if document is not None and document["Statement"]:
            self.documents.append(document)
            self.labels.append(label)


@dataclass(frozen=True)
class _PolicyBuilder:
    template: Mapping[str, Any]
    resolver: Resolver
    emulated: frozenset[str]

    @property
    def resources(self) -> Mapping[str, Any]:
        resources: Mapping[str, Any] = self.template["Resources"]
        return resources

    def principal(self, logical_id: str) -> Principal:
        resource = self.resources[logical_id]
        kind = resource["Type"]
        props = resource.get("Properties") or {}
        out = _Collected()
        if kind in _SAM_TYPES:
            if "PermissionsBoundary" in props:
                raise UnresolvablePolicy(f"{logical_id}: permissions boundaries are not modelled")
            if "Role" in props:
                self._role_documents(self._template_role(logical_id, props["Role"]), out)
            else:
                self._sam_policies(logical_id, props.get("Policies"), out)
                out.left_out.extend(self._sam_implicit_managed(kind, props))
        elif kind in _ROLE_PROPERTY:
            role = self._template_role(logical_id, props.get(_ROLE_PROPERTY[kind]))
            self._role_documents(role, out)
        else:
            self._role_documents(logical_id, out)
        return Principal(
            logical_id=logical_id,
            kind=_KINDS[kind],
            documents=tuple(out.documents),
            left_out=tuple(out.left_out),
            labels=tuple(out.labels),
        )

    # -- sources of documents ---------------------------------------------------------
    def _sam_policies(self, owner: str, policies: Any, out: _Collected) -> None:
        for index, item in enumerate(self._choose(_policy_items(policies))):
            if isinstance(item, str) or _is_intrinsic(item):
                self._managed(owner, item, out)
            elif isinstance(item, dict) and "Statement" in item:
                out.add(f"inline-{index}", self._document(owner, item, f"Policies[{index}]", out))
            elif isinstance(item, dict) and len(item) == 1:
                ((name, parameters),) = item.items()
                out.add(str(name), self._sam_template(owner, str(name), parameters, out))
            else:
                raise UnresolvablePolicy(f"{owner}: Policies[{index}] has an unknown form")

    def _sam_implicit_managed(self, kind: str, props: Mapping[str, Any]) -> list[str]:
        """Managed policies SAM attaches by itself; all of them are not emulated locally."""
        implicit = []
        if kind == "AWS::Serverless::Function":
            function_globals = (self.template.get("Globals") or {}).get("Function") or {}
            implicit.append("AWSLambdaBasicExecutionRole")
            tracing = self.resolver.resolve(props.get("Tracing", function_globals.get("Tracing")))
            if tracing == "Active":
                implicit.append("AWSXrayWriteOnlyAccess")
            if props.get("VpcConfig", function_globals.get("VpcConfig")):
                implicit.append("AWSLambdaVPCAccessExecutionRole")
        elif (props.get("Tracing") or {}).get("Enabled"):
            implicit.append("AWSXrayWriteOnlyAccess")
        return [f"managed policy {name} (added by SAM; not emulated)" for name in implicit]

    def _role_documents(self, role: str, out: _Collected) -> None:
        props = self.resources[role].get("Properties") or {}
        if "PermissionsBoundary" in props:
            raise UnresolvablePolicy(f"{role}: permissions boundaries are not modelled")
        for index, policy in enumerate(self._choose(_policy_items(props.get("Policies")))):
            name = str(self.resolver.resolve(policy.get("PolicyName", f"policy-{index}")))
            out.add(name, self._document(role, policy["PolicyDocument"], name, out))
        for arn in self._choose(_policy_items(props.get("ManagedPolicyArns"))):
            self._managed(role, arn, out)
        for logical_id, resource in self.resources.items():
            if resource.get("Type") not in _ATTACHED_POLICY_TYPES:
                continue
            attached = (resource.get("Properties") or {}).get("Roles") or []
            if (
                role in set(walk_refs(attached))
                and self.resolver.is_enabled(logical_id)
                and logical_id not in out.labels  # also named in ManagedPolicyArns
            ):
                document = resource["Properties"]["PolicyDocument"]
                out.add(logical_id, self._document(role, document, logical_id, out))

    def _managed(self, owner: str, value: Any, out: _Collected) -> None:
        refs = set(walk_refs(value)) & set(self.resources)
        if refs:
            # A managed policy of this template: its document applies like an inline one.
            policies = [
                ref for ref in refs if self.resources[ref].get("Type") == "AWS::IAM::ManagedPolicy"
            ]
            if len(policies) != 1 or len(refs) != 1:
                raise UnresolvablePolicy(f"{owner}: {value} is not one managed policy")
            (policy,) = policies
            document = self.resources[policy]["Properties"]["PolicyDocument"]
            out.add(policy, self._document(owner, document, policy, out))
            return
        arn = str(self.resolver.resolve(value))
        name = arn.rsplit("/", 1)[-1]
        if name not in NOT_EMULATED_MANAGED_POLICIES:
            raise UnresolvablePolicy(
                f"{owner}: managed policy {arn} may grant what the local stack emulates; "
                "write its statements in the template, or list it in "
                "NOT_EMULATED_MANAGED_POLICIES if it only concerns services not emulated"
            )
        out.left_out.append(f"managed policy {name} (not emulated)")

    def _template_role(self, owner: str, value: Any) -> str:
        roles = [
            ref
            for ref in walk_refs(value)
            if (self.resources.get(ref) or {}).get("Type") == "AWS::IAM::Role"
        ]
        if len(roles) != 1:
            raise UnresolvablePolicy(
                f"{owner}: its role is not a role of this template, so its policies are unknown"
            )
        return roles[0]

    # -- documents and statements ---------------------------------------------------------
    def _sam_template(
        self, owner: str, name: str, parameters: Any, out: _Collected
    ) -> PolicyDocument | None:
        if name not in SAM_POLICY_TEMPLATES:
            expand_sam_policy_template(name, {}, self.resolver)  # raises, naming the template
        resolved: dict[str, Any] = {}
        for key, value in (parameters or {}).items():
            try:
                resolved[str(key)] = self.resolver.resolve(value)
            except Unresolvable as error:
                missing = self._not_emulated(value)
                if not missing:
                    raise UnresolvablePolicy(f"{owner}: {name}.{key}: {error}") from error
                # The whole template targets a resource that does not exist locally.
                out.left_out.append(f"{name} on {', '.join(missing)} (not emulated locally)")
                return None
        return expand_sam_policy_template(name, resolved, self.resolver)

    def _document(
        self, owner: str, document: Any, label: str, out: _Collected
    ) -> PolicyDocument | None:
        if not isinstance(document, dict) or "Statement" not in document:
            raise UnresolvablePolicy(f"{owner}: {label} is not a policy document")
        raw = document["Statement"]
        statements = []
        for index, statement in enumerate(self._choose(raw if isinstance(raw, list) else [raw])):
            where = f"{owner}: {label} statement {statement.get('Sid', index)}"
            resolved = self._statement(where, statement, out)
            if resolved is not None:
                statements.append(resolved)
        return {"Version": POLICY_VERSION, "Statement": statements}

    def _statement(
        self, where: str, statement: Mapping[str, Any], out: _Collected
    ) -> dict[str, Any] | None:
        resolved: dict[str, Any] = {}
        for key, value in statement.items():
            if key == "Resource":
                continue
            try:
                resolved[key] = self.resolver.resolve(value)
            except Unresolvable as error:
                raise UnresolvablePolicy(f"{where}: {key}: {error}") from error
        if "Resource" not in statement:
            return resolved
        allow = resolved.get("Effect") == "Allow"
        raw = statement["Resource"]
        entries = self._choose(raw if isinstance(raw, list) else [raw])
        kept: list[str] = []
        for entry in entries:
            try:
                kept.append(str(self.resolver.resolve(entry)))
            except Unresolvable as error:
                missing = self._not_emulated(entry)
                if not (allow and missing):
                    # Dropping it from a Deny would widen what the principal may do.
                    raise UnresolvablePolicy(f"{where}: Resource: {error}") from error
                out.left_out.append(f"{where} on {', '.join(missing)} (not emulated locally)")
        if not kept:
            return None
        resolved["Resource"] = kept if isinstance(raw, list) else kept[0]
        return resolved

    # -- helpers ------------------------------------------------------------------------
    def _not_emulated(self, value: Any) -> list[str]:
        """Template resources `value` refers to that the local stack did not create."""
        return sorted(
            ref
            for ref in set(walk_refs(value))
            if ref in self.resources and ref not in self.emulated
        )

    def _choose(self, items: Sequence[Any]) -> Iterator[Any]:
        """The items with Fn::If evaluated (and AWS::NoValue dropped)."""
        for item in items:
            if isinstance(item, dict) and set(item) == {"Fn::If"}:
                condition, when_true, when_false = item["Fn::If"]
                chosen = when_true if self.resolver.condition(str(condition)) else when_false
                if chosen != {"Ref": "AWS::NoValue"}:
                    yield from self._choose([chosen])
            else:
                yield item


def _policy_items(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _is_intrinsic(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in {"Ref", "Fn::Sub", "Fn::Join", "Fn::If", "Fn::GetAtt"}
    )


def _role_has_policies(template: Mapping[str, Any], role: str) -> bool:
    resources: Mapping[str, Any] = template["Resources"]
    if (resources[role].get("Properties") or {}).get("Policies"):
        return True
    return any(
        resource.get("Type") in _ATTACHED_POLICY_TYPES
        and role in set(walk_refs((resource.get("Properties") or {}).get("Roles") or []))
        for resource in resources.values()
    )


# ------------------------------------------------------------------- the local resolver ----

_Clients = Callable[[str], Any]


def _kms_attributes(client: _Clients, ref: str, _: Resolver) -> dict[str, str]:
    meta = client("kms").describe_key(KeyId=ref)["KeyMetadata"]
    return {"Arn": meta["Arn"], "KeyId": meta["KeyId"]}


def _table_attributes(client: _Clients, ref: str, _: Resolver) -> dict[str, str]:
    table = client("dynamodb").describe_table(TableName=ref)["Table"]
    attributes = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        attributes["StreamArn"] = table["LatestStreamArn"]
    return attributes


def _bucket_attributes(_: _Clients, ref: str, resolver: Resolver) -> dict[str, str]:
    partition, region = resolver.pseudo["AWS::Partition"], resolver.pseudo["AWS::Region"]
    return {
        "Arn": f"arn:{partition}:s3:::{ref}",
        "DomainName": f"{ref}.s3.amazonaws.com",
        "RegionalDomainName": f"{ref}.s3.{region}.amazonaws.com",
    }


def _queue_attributes(client: _Clients, ref: str, _: Resolver) -> dict[str, str]:
    answer = client("sqs").get_queue_attributes(QueueUrl=ref, AttributeNames=["QueueArn"])
    arn = answer["Attributes"]["QueueArn"]
    return {"Arn": arn, "QueueName": arn.rsplit(":", 1)[-1], "QueueUrl": ref}


def _state_machine_attributes(client: _Clients, ref: str, _: Resolver) -> dict[str, str]:
    machine = client("stepfunctions").describe_state_machine(stateMachineArn=ref)
    return {"Arn": ref, "Name": machine["name"]}


def _user_pool_attributes(client: _Clients, ref: str, resolver: Resolver) -> dict[str, str]:
    pool = client("cognito-idp").describe_user_pool(UserPoolId=ref)["UserPool"]
    region = resolver.pseudo["AWS::Region"]
    return {
        "Arn": pool["Arn"],
        "ProviderName": f"cognito-idp.{region}.amazonaws.com/{ref}",
        "UserPoolId": ref,
    }


# The attributes (GetAtt) policies may name, read back from moto for each created resource.
# A type missing here gives only its Ref; asking for an attribute of it is an error.
_ATTRIBUTE_READERS: Mapping[str, Callable[[_Clients, str, Resolver], dict[str, str]]] = {
    "AWS::KMS::Key": _kms_attributes,
    "AWS::DynamoDB::Table": _table_attributes,
    "AWS::S3::Bucket": _bucket_attributes,
    "AWS::SQS::Queue": _queue_attributes,
    "AWS::Serverless::StateMachine": _state_machine_attributes,
    "AWS::StepFunctions::StateMachine": _state_machine_attributes,
    "AWS::Cognito::UserPool": _user_pool_attributes,
}


def local_resolver(
    session: boto3.session.Session,
    template: Mapping[str, Any],
    resources: LocalResources,
    *,
    stack_name: str = "nfse",
    parameter_overrides: Mapping[str, str] | None = None,
) -> Resolver:
    """A Resolver that knows what create_resources made (Ref and attributes).

    `stack_name` and `parameter_overrides` must be the `prefix` and overrides given to
    create_resources, so names and parameters resolve as they did there.
    """

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=resources.endpoint_url)  # type: ignore[call-overload]

    account_id = client("sts").get_caller_identity()["Account"]
    resolver = Resolver.for_template(
        template,
        overrides=parameter_overrides,
        region=resources.region,
        account_id=account_id,
        stack_name=stack_name,
    )
    declared: Mapping[str, Any] = template["Resources"]
    for logical_id, ref in resources.physical_ids.items():
        reader = _ATTRIBUTE_READERS.get(str(declared[logical_id]["Type"]))
        attributes = reader(client, ref, resolver) if reader else {}
        resolver.created(logical_id, ref, attributes)
    return resolver


def template_principals(
    session: boto3.session.Session,
    resources: LocalResources,
    *,
    template_path: Path = DEFAULT_TEMPLATE,
    stack_name: str = "nfse",
    parameter_overrides: Mapping[str, str] | None = None,
) -> dict[str, Principal]:
    """Every principal of the template with its policies resolved to `resources`."""
    template = load_template(template_path)
    resolver = local_resolver(
        session,
        template,
        resources,
        stack_name=stack_name,
        parameter_overrides=parameter_overrides,
    )
    return effective_policies(template, resolver, emulated=resources.physical_ids.keys())


# ------------------------------------------------------------------------- users in moto ----

_POLICY_NAME_UNSAFE = re.compile(r"[^\w+=,.@-]")


def create_user(
    iam: Any, name: str, documents: Sequence[PolicyDocument], labels: Sequence[str] = ()
) -> Credentials:
    """An IAM user `name` with `documents` as its inline policies, and its access key.

    `iam` is an IAM client with the right to create users (the harness's). Each policy is named
    `NN-<label>` (its SAM template, PolicyName...), so a refusal can be traced to the template.
    The answer is the environment a component reads its credentials from.
    """
    iam.create_user(UserName=name)
    for index, document in enumerate(documents):
        label = labels[index] if index < len(labels) else "policy"
        policy_name = f"{index:02d}-{_POLICY_NAME_UNSAFE.sub('-', label)}"[:128]
        iam.put_user_policy(
            UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


@dataclass(frozen=True)
class LocalIam:
    """One IAM user per principal of the template (and an admin), in moto."""

    users: Mapping[str, Credentials]
    admin_credentials: Credentials
    principal_policies: Mapping[str, Principal]
    # Role ARN moto runs each state machine with -> its principal's logical id.
    state_machine_roles: Mapping[str, str]
    region: str
    endpoint_url: str | None = None

    @classmethod
    def create(  # noqa: PLR0913 - keyword-only: the template and its overrides
        cls,
        session: boto3.session.Session,
        resources: LocalResources,
        *,
        template_path: Path = DEFAULT_TEMPLATE,
        stack_name: str = "nfse",
        parameter_overrides: Mapping[str, str] | None = None,
        policies: Mapping[str, Sequence[PolicyDocument]] | None = None,
    ) -> LocalIam:
        """Create the users through `session` (which must be allowed to: call it before
        `iam_enforced()`, or with admin credentials).

        `policies` replaces the documents of the named principals (a test's variant of the
        template's policies); a name that is not a principal of the template is an error.
        """
        principals = template_principals(
            session,
            resources,
            template_path=template_path,
            stack_name=stack_name,
            parameter_overrides=parameter_overrides,
        )
        unknown = set(policies or {}) - set(principals)
        if unknown:
            raise KeyError(f"not principals of the template: {sorted(unknown)}")
        for name, documents in (policies or {}).items():
            principals[name] = Principal(
                logical_id=name,
                kind=principals[name].kind,
                documents=tuple(documents),
                left_out=(*principals[name].left_out, "documents replaced by the caller"),
            )
        if ADMIN_USER in principals:
            raise ValueError(f"a principal is named {ADMIN_USER!r}, the harness's user")

        def client(service: str) -> Any:
            return session.client(service, endpoint_url=resources.endpoint_url)  # type: ignore[call-overload]

        iam = client("iam")
        users = {
            name: create_user(iam, name, principal.documents, principal.labels)
            for name, principal in sorted(principals.items())
        }
        admin = create_user(iam, ADMIN_USER, [ADMIN_POLICY])
        roles = {}
        for name, principal in principals.items():
            if principal.kind == "state-machine" and name in resources.physical_ids:
                machine = client("stepfunctions").describe_state_machine(
                    stateMachineArn=resources.physical_ids[name]
                )
                roles[str(machine["roleArn"])] = name
        return cls(
            users=MappingProxyType(users),
            admin_credentials=admin,
            principal_policies=MappingProxyType(principals),
            state_machine_roles=MappingProxyType(roles),
            region=resources.region,
            endpoint_url=resources.endpoint_url,
        )

    def principals(self) -> list[str]:
        """Logical ids of the template's principals, each with a user."""
        return sorted(self.users)

    def credentials(self, principal: str) -> Credentials:
        """The environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) of `principal`'s user."""
        try:
            return dict(self.users[principal])
        except KeyError:
            raise KeyError(f"{principal} is not a principal of the template") from None

    def policies(self, principal: str) -> tuple[PolicyDocument, ...]:
        return self.principal_policies[principal].documents

    def session(self, principal: str | None = None) -> boto3.session.Session:
        """A boto3 session as `principal` (None: the admin). Clients still need the
        endpoint_url of a moto server (see `endpoint_url`)."""
        creds = self.admin_credentials if principal is None else self.credentials(principal)
        return boto3.session.Session(
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        )

    def task_credentials(self) -> dict[str, Credentials]:
        """Role ARN of each state machine -> its principal's credentials: the registry
        `nfse_local.moto_patches.stepfunctions_task_credentials` reads."""
        return {role: self.credentials(name) for role, name in self.state_machine_roles.items()}
