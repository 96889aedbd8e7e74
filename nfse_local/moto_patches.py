"""Where moto differs from AWS in a way our tests depend on, made to behave like AWS.

Applied by the embedded stacks (nfse_local.stack.LocalStack, nfse_local.invoke.in_process_stack)
so every test and the demo run with the guarantee.

Each patch is a context manager that replaces a piece of moto's classes or modules and puts it
back on exit, so it holds for in-process `mock_aws` and for a ThreadedMotoServer running in the
same process alike. The IAM ones (the second half of this module) make moto's IAM enforcement
no kinder than AWS's, for the principals nfse_local.iam.LocalIam creates:

- `iam_enforced()`: turn moto's enforcement on (and restore the previous setting);
- `iam_resource_arns()`: DynamoDB, Step Functions, Secrets Manager, KMS (and SQS by name)
  requests are checked against the resource's ARN, not "*";
- `iam_statement_evaluation()`: a Condition that is not met (or that moto cannot evaluate)
  keeps an Allow from applying, as IAM does; NotResource and wildcards as IAM reads them;
- `s3_missing_key_needs_list_bucket()`: GetObject/HeadObject of a missing key is 403 unless
  the caller may s3:ListBucket, as S3 answers;
- `stepfunctions_task_credentials(registry)`: service-integration Tasks call AWS with the
  state machine role's credentials, not moto's fixed ones;
- `iam_batch_actions()`: batch actions are authorized as the actions IAM knows them by;
- `iam_json_refusals()`: a refusal by a JSON-protocol service is its AccessDeniedException;
- `aws_iam_parity(registry)`: all of the above but `iam_enforced()`.

They reach into moto internals (moto 5.2.x); tests/integration/test_iam_enforcement.py pins
each behaviour, so an upgrade that moves them fails there first.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import contextvars
import functools
import json
import re
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, JsonRESTError
from moto.dynamodb.models import DynamoDBBackend
from moto.iam.access_control import (
    IAMPolicyStatement,
    IAMRequest,
    IAMRequestBase,
    PermissionResult,
    S3IAMRequest,
)
from moto.kms.models import kms_backends
from moto.kms.utils import _deserialize_ciphertext_blob
from moto.s3.exceptions import MissingKey, S3AccessDeniedError, S3ClientError
from moto.s3.responses import S3Response
from moto.secretsmanager.models import secretsmanager_backends
from moto.stepfunctions.parser.asl.utils import boto_client
from moto.utilities.utils import get_partition

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


@contextlib.contextmanager
def atomic_moto_writes() -> Iterator[None]:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are.

    moto checks a ConditionExpression and then writes, with no lock between the two: two
    threads (the moto server's, or in-process mock_aws callers) can both pass
    `attribute_not_exists(id)`. Real DynamoDB evaluates the condition and writes atomically
    per item, and the platform relies on that (idempotency records, status transitions), so
    concurrency tests must run with this guarantee or they test moto's race, not ours.
    """
    lock = threading.RLock()
    saved = {name: getattr(DynamoDBBackend, name) for name in _WRITES}

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        return write

    for name, original in saved.items():
        setattr(DynamoDBBackend, name, locked(original))
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(DynamoDBBackend, name, original)


# ------------------------------------------------------------------------ IAM parity ----
#
# moto checks a request in `ActionAuthenticatorMixin._authenticate_and_authorize_action`: the
# SigV4 signature against the caller's IAM access key, then the caller's identity policies for
# "<signing name>:<operation>" on one resource. Every service but S3 enters it through
# `_authenticate_and_authorize_normal_action(resource)`, S3 through
# `_authenticate_and_authorize_s3_action`; policies are read by `IAMPolicyStatement`.


def _enforcing() -> bool:
    """moto's own test of whether the current request is checked (the first
    INITIAL_NO_AUTH_ACTION_COUNT requests are not; `iam_enforced` makes that none)."""
    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


@contextlib.contextmanager
def iam_enforced() -> Iterator[None]:
    """Turn moto's IAM enforcement on: every request must be signed with the access key of an
    IAM user moto knows, and that user's policies must allow it. The previous setting (and
    moto's count of requests made without checks) comes back on exit.

    AWS always enforces; moto by default lets every request through, so without this a missing
    permission never fails locally. Enter it after the harness has created what it needs with
    moto's dummy credentials (resources, nfse_local.iam.LocalIam's users), since those
    credentials belong to no IAM user and are refused from then on.
    """
    saved = settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0.0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = saved


@contextlib.contextmanager
def _replaced(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    """`owner.name` is `replacement` inside; on exit the owner's own attribute comes back, or,
    when the attribute was inherited, the override is removed rather than the parent's copied."""
    own = vars(owner)
    had = name in own
    saved = own.get(name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, saved)
        else:
            delattr(owner, name)


# (IAM action to check instead of the request's own, or None; resource ARN)
_Check = tuple[str | None, str]


class _AuthorizationHook:
    """One replacement of `_authenticate_and_authorize_normal_action`, shared by the patches
    that refine it (resource ARNs, batch actions, refusals): installed when the first of them
    enters, removed when the last exits, so they nest in any order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._features: Counter[str] = Counter()
        self._installed: contextlib.ExitStack | None = None

    def active(self, feature: str) -> bool:
        return self._features[feature] > 0

    @contextlib.contextmanager
    def feature(self, name: str) -> Iterator[None]:
        with self._lock:
            if self._installed is None:
                stack = contextlib.ExitStack()
                stack.enter_context(
                    _replaced(
                        ActionAuthenticatorMixin,
                        "_authenticate_and_authorize_normal_action",
                        _authorize_normal,
                    )
                )
                self._installed = stack
            self._features[name] += 1
        try:
            yield
        finally:
            with self._lock:
                self._features[name] -= 1
                if sum(self._features.values()) == 0 and self._installed is not None:
                    self._installed.close()
                    self._installed = None

    def checks(self, response: Any, resource: str) -> list[_Check]:
        service = str(response.service_name)
        action = str(response._get_action())
        found: list[_Check] = [(None, resource)]
        resolve = _RESOURCE_ARNS.get(service)
        if self.active("resource-arns") and resolve is not None:
            found = resolve(response, action, resource) or [(None, "*")]
        if self.active("batch-actions"):
            found = [
                (_BATCH_ACTIONS.get((service, name or action), name), arn) for name, arn in found
            ]
        # A batch or transaction naming one table twice is checked once.
        return list(dict.fromkeys(found))


_HOOK = _AuthorizationHook()


@functools.cache
def _acting_as(action: str) -> Callable[..., Any]:
    """An IAMRequest factory that checks `action` (an operation name) instead of the request's."""

    def request(**kwargs: Any) -> Any:
        return IAMRequest(**{**kwargs, "action": action})

    return request


def _authorize_normal(response: Any, resource: str = "*") -> None:
    if not _enforcing():
        # Unchecked: one call, so moto counts the request once, as it would.
        response._authenticate_and_authorize_action(IAMRequest, resource)
        return
    for action, arn in _HOOK.checks(response, resource):
        factory = IAMRequest if action is None else _acting_as(action)
        try:
            response._authenticate_and_authorize_action(factory, arn)
        except AccessDeniedError as refusal:
            if not (_HOOK.active("json-refusals") and response.service_name in _JSON_SERVICES):
                raise
            answer = JsonRESTError("AccessDeniedException", f"{refusal.message} on resource: {arn}")
            answer.code = 400
            raise answer from None


def _json_body(response: Any) -> dict[str, Any]:
    """The request's JSON body (the JSON-protocol services), {} when it has none."""
    raw = getattr(response, "raw_body", None)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not raw or not isinstance(raw, str):
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _arn_prefix(response: Any, service: str) -> str:
    region = str(response.region)
    return f"arn:{get_partition(region)}:{service}:{region}:{response.current_account}"


_TRANSACT_WRITE_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _dynamodb_checks(response: Any, action: str, resource: str) -> list[_Check]:
    body = _json_body(response)
    prefix = _arn_prefix(response, "dynamodb")

    def table(name: Any) -> str:
        text = str(name)
        return text if text.startswith("arn:") else f"{prefix}:table/{text}"

    items = body.get("TransactItems") or []
    if action == "TransactWriteItems":
        # IAM has no transaction actions: each item is checked as the write it is.
        return [
            (_TRANSACT_WRITE_ACTIONS[kind], table(operation["TableName"]))
            for item in items
            for kind, operation in item.items()
            if kind in _TRANSACT_WRITE_ACTIONS
        ]
    if action == "TransactGetItems":
        return [("GetItem", table(item["Get"]["TableName"])) for item in items if "Get" in item]
    if action in {"BatchGetItem", "BatchWriteItem"}:
        return [(None, table(name)) for name in body.get("RequestItems") or {}]
    if body.get("TableName"):
        arn = table(body["TableName"])
        if body.get("IndexName"):
            # A query or scan of an index is checked against the index alone.
            arn = f"{arn}/index/{body['IndexName']}"
        return [(None, arn)]
    if body.get("ResourceArn"):
        return [(None, str(body["ResourceArn"]))]
    return [(None, "*")]


_STATES_ARN_KEYS = ("stateMachineArn", "executionArn", "mapRunArn", "activityArn", "resourceArn")


def _stepfunctions_checks(response: Any, action: str, resource: str) -> list[_Check]:
    body = _json_body(response)
    for key in _STATES_ARN_KEYS:
        if body.get(key):
            return [(None, str(body[key]))]
    if action == "CreateStateMachine" and body.get("name"):
        return [(None, f"{_arn_prefix(response, 'states')}:stateMachine:{body['name']}")]
    return [(None, "*")]


def _secretsmanager_checks(response: Any, action: str, resource: str) -> list[_Check]:
    body = _json_body(response)
    secret_id = body.get("SecretId") or (body.get("Name") if action == "CreateSecret" else None)
    if not secret_id:
        return [(None, "*")]
    backend = secretsmanager_backends[response.current_account][response.region]
    secret = backend.secrets.get(str(secret_id))
    if secret is not None:
        # By name, full or partial ARN alike, IAM sees the secret's full ARN (with its suffix).
        return [(None, str(secret.arn))]
    if str(secret_id).startswith("arn:"):
        return [(None, str(secret_id))]
    # No such secret: the ARN without the random suffix AWS would have given it.
    return [(None, f"{_arn_prefix(response, 'secretsmanager')}:secret:{secret_id}")]


def _ciphertext_key_id(blob: Any) -> str | None:
    """The key id moto wrote into its own ciphertext format (Decrypt may omit KeyId)."""
    try:
        return str(_deserialize_ciphertext_blob(base64.b64decode(str(blob))).key_id)
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return None


def _kms_checks(response: Any, action: str, resource: str) -> list[_Check]:
    body = _json_body(response)
    key_id = body.get("KeyId")
    if not key_id and action == "Decrypt" and body.get("CiphertextBlob"):
        key_id = _ciphertext_key_id(body["CiphertextBlob"])
    if not key_id:
        return [(None, "*")]
    text = str(key_id)
    backend = kms_backends[response.current_account][response.region]
    try:
        # Key id, key ARN, alias name or alias ARN: IAM checks the key's ARN.
        return [(None, str(backend.keys[backend.any_id_to_key_id(text)].arn))]
    except (KeyError, AttributeError):
        pass  # no such key or alias: the ARN the caller named, as AWS would check it
    prefix = _arn_prefix(response, "kms")
    if text.startswith("arn:"):
        return [(None, text)]
    return [(None, f"{prefix}:{text}" if text.startswith("alias/") else f"{prefix}:key/{text}")]


def _sqs_checks(response: Any, action: str, resource: str) -> list[_Check]:
    target = response._get_param("QueueUrl") or response._get_param("QueueName")
    if not target:
        return [(None, resource)]
    parts = str(target).rstrip("/").split("/")
    is_url = str(target).startswith(("http://", "https://")) and len(parts) >= 5
    account = parts[-2] if is_url else response.current_account
    region = str(response.region)
    # From the URL or name alone: moto's own lookup answers "*" for a queue it does not have
    # (or for GetQueueUrl/CreateQueue), which no scoped policy allows.
    return [(None, f"arn:{get_partition(region)}:sqs:{region}:{account}:{parts[-1]}")]


_RESOURCE_ARNS: Mapping[str, Callable[[Any, str, str], list[_Check]]] = {
    "dynamodb": _dynamodb_checks,
    "stepfunctions": _stepfunctions_checks,
    "secretsmanager": _secretsmanager_checks,
    "kms": _kms_checks,
    "sqs": _sqs_checks,
}

# Operations IAM authorizes as another action ((moto service name, operation) -> action).
_BATCH_ACTIONS: Mapping[tuple[str, str], str] = {
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}


# JSON-protocol services whose refusal is an AccessDeniedException (HTTP 400) in AWS.
_JSON_SERVICES = frozenset({"dynamodb", "stepfunctions", "secretsmanager", "kms"})


@contextlib.contextmanager
def iam_json_refusals() -> Iterator[None]:
    """Refuse DynamoDB, Step Functions, Secrets Manager and KMS requests as those services do:
    HTTP 400 with a JSON AccessDeniedException naming the action and the resource. moto sends
    its query-protocol XML with HTTP 403, which botocore cannot parse for these services (the
    caller sees the code "403"), so code that tells AccessDeniedException apart would take
    another path locally than in AWS.
    """
    with _HOOK.feature("json-refusals"):
        yield


@contextlib.contextmanager
def iam_resource_arns() -> Iterator[None]:
    """Check DynamoDB, Step Functions, Secrets Manager and KMS requests against the resource's
    ARN, as IAM does (moto checks them against "*", which no resource-scoped statement matches,
    so a correctly scoped policy is refused; only S3, SQS, IAM and STS name their resource).

    - DynamoDB: TableName (a name or ARN) -> the table's ARN; with IndexName, the index's ARN.
      BatchGetItem/BatchWriteItem: every table of RequestItems. TransactWriteItems: each item as
      the action it is (PutItem, UpdateItem, DeleteItem, ConditionCheckItem) on its table;
      TransactGetItems: GetItem on each table. Every check must pass.
    - Step Functions: stateMachineArn, executionArn (or mapRunArn, activityArn, resourceArn).
    - Secrets Manager: SecretId as a name, partial or full ARN -> the secret's full ARN.
    - KMS: KeyId as key id, key ARN, alias name or alias ARN -> the key's ARN (Decrypt without
      KeyId: the key recorded in the ciphertext).
    - SQS: the queue's ARN from QueueUrl or QueueName, also for a queue moto does not have.
    Operations without a resource keep "*", as IAM requires for them.
    """
    with _HOOK.feature("resource-arns"):
        yield


@contextlib.contextmanager
def iam_batch_actions() -> Iterator[None]:
    """Authorize SQS SendMessageBatch, DeleteMessageBatch and ChangeMessageVisibilityBatch as
    sqs:SendMessage, sqs:DeleteMessage and sqs:ChangeMessageVisibility, as AWS does (IAM has no
    batch actions for SQS; moto asks for sqs:...Batch, which a policy granting the single action
    does not match). DynamoDB's BatchGetItem/BatchWriteItem are IAM actions of their own and stay.
    """
    with _HOOK.feature("batch-actions"):
        yield


# ------------------------------------------------------------- statements and conditions ----

# Condition keys the local stack can tell for a request, lower-cased. Any other key (the
# principal's ARN or tags, aws:SourceVpce, aws:SecureTransport, service keys...) would differ
# locally or is unknown to moto, so a condition on it cannot be evaluated.
_REQUEST_CONTEXT: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "nfse_iam_request_context", default=None
)


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: * any run of characters, ? one; everything else literal."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _element_matches(statement: Mapping[str, Any], element: str, value: str) -> bool:
    patterns = statement[element]
    # Action names are case-insensitive in IAM; ARNs are not.
    ignore_case = element in {"Action", "NotAction"}
    return any(
        _wildcard(str(pattern), ignore_case).fullmatch(value)
        for pattern in (patterns if isinstance(patterns, list) else [patterns])
    )


def _string_like(expected: str, actual: str) -> bool:
    return _wildcard(expected, False).fullmatch(actual) is not None


_CONDITION_TESTS: Mapping[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda expected, actual: actual == expected,
    "StringEqualsIgnoreCase": lambda expected, actual: actual.casefold() == expected.casefold(),
    "StringLike": _string_like,
    "ArnEquals": lambda expected, actual: actual == expected,
    "ArnLike": _string_like,
    "Bool": lambda expected, actual: actual.lower() == expected.lower(),
}
_NEGATED_TESTS = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _condition_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _condition_holds(
    operator: str, key: str, expected: Any, context: Mapping[str, str]
) -> bool | None:
    """One key of one operator: True, False, or None when it cannot be evaluated here."""
    actual = context.get(key.lower())
    # Set operators (ForAnyValue:/ForAllValues:) need multivalued keys, which we never know.
    if actual is None or ":" in operator:
        return None
    base = operator.removesuffix("IfExists")  # the key is present, so IfExists changes nothing
    values = [_condition_text(v) for v in (expected if isinstance(expected, list) else [expected])]
    if base == "Null":
        return all(value.lower() == "false" for value in values)
    if base in _NEGATED_TESTS:
        negated = _CONDITION_TESTS[_NEGATED_TESTS[base]]
        return not any(negated(value, actual) for value in values)
    test = _CONDITION_TESTS.get(base)
    if test is None:
        return None  # Numeric*, Date*, IpAddress, Binary...: not evaluated locally
    return any(test(value, actual) for value in values)


def _conditions_hold(block: Any, context: Mapping[str, str]) -> bool | None:
    """A statement's Condition block: every operator and key must hold (None: cannot tell)."""
    if not block:
        return True
    if not isinstance(block, dict):
        return None
    undecided = False
    for operator, tests in block.items():
        if not isinstance(tests, dict):
            return None
        for key, expected in tests.items():
            verdict = _condition_holds(str(operator), str(key), expected, context)
            if verdict is False:
                return False
            undecided = undecided or verdict is None
    return None if undecided else True


def _s3_list_prefix(request: Any) -> str | None:
    """s3:prefix of a ListObjects(V2) request (its `prefix` query value, "" when it has none),
    as S3 sets it for ListBucket; None for any other request."""
    if str(getattr(request, "_action", "")).lower() != "s3:listbucket":
        return None
    query = parse_qs(urlsplit(str(getattr(request, "_path", ""))).query, keep_blank_values=True)
    return (query.get("prefix") or [""])[0]


@contextlib.contextmanager
def iam_statement_evaluation() -> Iterator[None]:
    """Evaluate policy statements as IAM does where moto does not.

    - Condition. A statement whose Condition is not met does not apply: an Allow then allows
      nothing and a Deny denies nothing (moto answers an explicit deny for an unmet one; and,
      given no request values, as in every identity-policy check, it takes any condition as
      met, which allows what AWS would not). Conditions are evaluated on the keys the local
      stack knows for a request (aws:RequestedRegion, s3:prefix of a bucket listing, and what
      moto passes for a trust policy such as sts:ExternalId) with the String*, Arn*, Bool and
      Null operators (IfExists too).
      A condition on any other key or operator cannot be evaluated here, and is resolved
      against the caller: an Allow does not apply, a Deny does. So an unevaluable condition
      never allows, and the local stack can only be stricter than AWS, never kinder.
    - NotResource. moto ignores it (the statement then applies to every resource); here it
      applies to every resource but those listed.
    - Wildcards. `*` and `?` as IAM reads them, the rest literal (moto reads patterns as
      regular expressions, where `.` matches any character); action names case-insensitive.
    """
    evaluate = IAMPolicyStatement.is_action_permitted
    check = IAMRequestBase.check_action_permitted

    def is_action_permitted(
        self: Any,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> Any:
        statement: dict[str, Any] = self._statement
        if "NotAction" in statement:
            concerned = not _element_matches(statement, "NotAction", action)
        else:
            concerned = _element_matches(statement, "Action", action)
        if not concerned:
            return PermissionResult.NEUTRAL
        context = {
            **(_REQUEST_CONTEXT.get() or {}),
            **{k.lower(): str(v) for k, v in (incoming_condition_values or {}).items()},
        }
        verdict = _conditions_hold(statement.get("Condition"), context)
        if verdict is False or (verdict is None and statement.get("Effect") == "Allow"):
            return PermissionResult.NEUTRAL
        rest = {key: value for key, value in statement.items() if key != "Condition"}
        if "NotResource" in rest:
            if _element_matches(rest, "NotResource", resource):
                return PermissionResult.NEUTRAL
            del rest["NotResource"]
            rest["Resource"] = "*"
        # The condition is settled; moto's own code does the principal and the resource.
        return evaluate(
            IAMPolicyStatement(rest), action, resource, principal, incoming_condition_values
        )

    def check_element_matches(self: Any, element: str, value: str) -> bool:
        return _element_matches(self._statement, element, value)

    def check_action_permitted(self: Any, resource: str) -> None:
        context = {"aws:requestedregion": str(self._region)}
        prefix = _s3_list_prefix(self)
        if prefix is not None:
            context["s3:prefix"] = prefix
        token = _REQUEST_CONTEXT.set(context)
        try:
            check(self, resource)
        finally:
            _REQUEST_CONTEXT.reset(token)

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            _replaced(IAMPolicyStatement, "is_action_permitted", is_action_permitted)
        )
        stack.enter_context(
            _replaced(IAMPolicyStatement, "_check_element_matches", check_element_matches)
        )
        stack.enter_context(
            _replaced(IAMRequestBase, "check_action_permitted", check_action_permitted)
        )
        yield


# ------------------------------------------------------------------------------- S3 ----


def _may_list_bucket(response: Any, bucket: str) -> bool:
    """Whether the caller of this S3 request is allowed s3:ListBucket on `bucket`."""
    try:
        request = S3IAMRequest(
            account_id=response.current_account,
            method=response.method,
            path=response.raw_path,
            data=response.data,
            body=response.raw_body,
            headers=response.headers,
            action="ListBucket",
        )
        request.check_action_permitted(f"arn:{get_partition(str(response.region))}:s3:::{bucket}")
    except (S3ClientError, KeyError):
        return False
    return True


@contextlib.contextmanager
def s3_missing_key_needs_list_bucket() -> Iterator[None]:
    """GetObject/HeadObject of a key that does not exist: 403 AccessDenied unless the caller is
    allowed s3:ListBucket on the bucket, 404 (NoSuchKey) only then, as S3 answers.

    S3 does not tell a caller who may not list the bucket whether a key exists; moto always
    answers 404. Code that treats 404 as "not there yet" (a HeadObject before a first write)
    works locally and crashes in AWS unless its role has s3:ListBucket. Requests moto does not
    check (enforcement off) keep moto's answer.
    """
    authorize = S3Response._authenticate_and_authorize_s3_action
    get_object = S3Response.get_object
    head_object = S3Response.head_object

    def authorize_s3(
        self: Any, bucket_name: str | None = None, key_name: str | None = None
    ) -> None:
        # Noted before moto counts the request, which may change the answer for the next one.
        self._nfse_iam_checked = _enforcing()
        authorize(self, bucket_name=bucket_name, key_name=key_name)

    def hides_missing_keys(self: Any, bucket: str) -> bool:
        return bool(getattr(self, "_nfse_iam_checked", False)) and not _may_list_bucket(
            self, bucket
        )

    def get(self: Any) -> Any:
        try:
            return get_object(self)
        except MissingKey:
            if hides_missing_keys(self, str(self.bucket_name)):
                raise S3AccessDeniedError() from None
            raise

    def head(self: Any, bucket_name: str, query: Any, key_name: str, headers: Any) -> Any:
        answer = head_object(self, bucket_name, query, key_name, headers=headers)
        if answer[0] == 404 and hides_missing_keys(self, bucket_name):
            return 403, {}, ""  # a HEAD answer has no body; SDKs report "403 Forbidden"
        return answer

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            _replaced(S3Response, "_authenticate_and_authorize_s3_action", authorize_s3)
        )
        stack.enter_context(_replaced(S3Response, "get_object", get))
        stack.enter_context(_replaced(S3Response, "head_object", head))
        yield


# ------------------------------------------------------------------- Step Functions ----


@contextlib.contextmanager
def stepfunctions_task_credentials(registry: Mapping[str, Mapping[str, str]]) -> Iterator[None]:
    """Service-integration Tasks (sqs:sendMessage, dynamodb:updateItem...) call AWS with the
    credentials of the state machine's role, as Step Functions does.

    moto's ASL interpreter builds its clients with fixed credentials ("ak"/"sk"), which belong
    to no IAM user: under enforcement every Task fails whatever the role allows, and without it
    every Task succeeds whatever the role lacks. `registry` maps a role ARN (the state machine's
    roleArn, or a Task's Credentials.RoleArn) to the environment of the IAM user that stands for
    it ({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, nfse_local.iam.LocalIam.task_credentials).
    It is read at each Task, so it may be filled after entering. A role it lacks keeps moto's
    credentials, refused under enforcement, as a role without permissions would be.
    """
    original = boto_client.boto_client_for

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region=region, service=service, state_credentials=state_credentials)
        credentials = registry.get(str(getattr(state_credentials, "role_arn", None) or ""))
        if credentials is None:
            return client
        # moto's endpoint (its server, or the in-process interception) and client config.
        return boto3.client(  # type: ignore[call-overload]
            service,
            region_name=region,
            endpoint_url=client.meta.endpoint_url,
            config=client.meta.config,
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def swap(old: Any, new: Any) -> None:
        # Every Task module imported the function by name; modules imported while the patch is
        # on got the replacement, so the way back looks at all of them again.
        for name, loaded in list(sys.modules.items()):
            if (
                name.startswith("moto.stepfunctions.")
                and vars(loaded).get("boto_client_for") is old
            ):
                vars(loaded)["boto_client_for"] = new

    swap(original, client_for)
    try:
        yield
    finally:
        swap(client_for, original)


# Cognito user-pool operations AWS serves without SigV4 (the app client's own sign-in calls):
# moto lists InitiateAuth but not the challenge answer, and fails on the missing signature.
_COGNITO_UNSIGNED = (
    "AWSCognitoIdentityProviderService.RespondToAuthChallenge",
    "AWSCognitoIdentityProviderService.ConfirmForgotPassword",
    "AWSCognitoIdentityProviderService.RevokeToken",
)


@contextlib.contextmanager
def cognito_unsigned_operations() -> Iterator[None]:
    """Let the unauthenticated Cognito sign-in operations through enforcement, as AWS does
    (the SRP flow's RespondToAuthChallenge carries no credentials)."""
    saved = list(ActionAuthenticatorMixin.PUBLIC_OPERATIONS)
    ActionAuthenticatorMixin.PUBLIC_OPERATIONS = saved + [
        op for op in _COGNITO_UNSIGNED if op not in saved
    ]
    try:
        yield
    finally:
        ActionAuthenticatorMixin.PUBLIC_OPERATIONS = saved


@contextlib.contextmanager
def aws_iam_parity(task_credentials: Mapping[str, Mapping[str, str]]) -> Iterator[None]:
    """Every IAM patch of this module but `iam_enforced()` (see each for what it restores)."""
    with (
        iam_resource_arns(),
        iam_batch_actions(),
        iam_json_refusals(),
        iam_statement_evaluation(),
        s3_missing_key_needs_list_bucket(),
        stepfunctions_task_credentials(task_credentials),
        cognito_unsigned_operations(),
    ):
        yield
