"""The local stack is no kinder than AWS: each principal of template.yaml calls moto with the
credentials of its own role, IAM is enforced, and moto refuses what AWS would refuse.

Resources come from template.yaml (nfse_local.resources.create_resources), the users from its
policies (nfse_local.iam.LocalIam), the AWS behaviours from nfse_local.moto_patches. The
template is edited by others as this runs: the tests hold for whatever principals it declares,
and name the ones whose policies the platform's code depends on.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_sqs,
)

from nfse_local.cfn import Resolver, load_template
from nfse_local.iam import (
    ADMIN_USER,
    SAM_POLICY_ACTIONS,
    SAM_POLICY_TEMPLATES,
    LocalIam,
    PolicyDocument,
    Principal,
    UnresolvablePolicy,
    effective_policies,
    expand_sam_policy_template,
    principal_ids,
    sam_policy_templates_used,
)
from nfse_local.moto_patches import aws_iam_parity, iam_enforced
from nfse_local.resources import create_resources
from tests.integration.emission_input import CONTRACT_INPUT, INVOICE_ID
from tests.integration.iam_harness import (
    ACCOUNT,
    REGION,
    TEMPLATE_PATH,
    WORKER,
    Enforced,
    enforced_stack,
    refused,
)

pytestmark = pytest.mark.usefixtures("dummy_credentials")

EMIT = "EmitFn"
MACHINE = "EmissionStateMachine"
NAMED_PRINCIPALS = {EMIT, "GetFn", "ProcessorFn", WORKER, MACHINE}

CERT_SECRET = "nfse/certificates/11222333000181"  # the parameter CertSecretPrefix's default


# ------------------------------------------------------------------------ helpers ----


def key(invoice_id: str = INVOICE_ID) -> dict[str, Any]:
    return {"invoiceId": {"S": invoice_id}}


def put_invoice(stack: Enforced, status: str) -> None:
    stack.client("dynamodb").put_item(
        TableName=stack.resources.invoices_table,
        Item={**key(), "status": {"S": status}, "tenant": {"S": "acme"}},
    )


def run_execution(stack: Enforced, principal: str) -> dict[str, Any]:
    """Start the emission state machine as `principal`; wait for the run (as the admin)."""
    started = stack.client("stepfunctions", principal).start_execution(
        stateMachineArn=stack.resources.state_machine_arn,
        name=f"test-{uuid.uuid4()}",
        input=json.dumps(CONTRACT_INPUT),
    )
    sfn = stack.client("stepfunctions")
    # The sendMessage Retry (1 s, x2, 3 attempts, full jitter) waits up to 7 s before the Catch.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        execution: dict[str, Any] = sfn.describe_execution(executionArn=started["executionArn"])
        if execution["status"] != "RUNNING":
            return execution
        time.sleep(0.1)
    raise AssertionError("the execution is still running")


def queued_bodies(stack: Enforced, queue_url: str) -> list[Any]:
    answer = stack.client("sqs").receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


def _actions(statement: Mapping[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [str(a) for a in (actions if isinstance(actions, list) else [actions])]


def _template_resolver() -> Resolver:
    return Resolver.for_template(
        load_template(TEMPLATE_PATH), region=REGION, account_id=ACCOUNT, stack_name="nfse"
    )


# ------------------------------------------------------- the policy map (no AWS at all) ----


@pytest.mark.unit
def test_every_sam_policy_template_the_template_uses_is_expanded() -> None:
    """A SAM policy template the table lacks fails here, naming the resource that uses it."""
    used = sam_policy_templates_used(load_template(TEMPLATE_PATH))
    unknown = {
        name: sorted(users) for name, users in used.items() if name not in SAM_POLICY_TEMPLATES
    }
    assert unknown == {}, "add them to nfse_local.iam.SAM_POLICY_TEMPLATES"
    resolver = _template_resolver()
    for name in used:
        parameters = {p: f"value-of-{p}" for p in SAM_POLICY_TEMPLATES[name].parameters}
        document = expand_sam_policy_template(name, parameters, resolver)
        actions = [a for statement in document["Statement"] for a in _actions(statement)]
        assert tuple(actions) == SAM_POLICY_ACTIONS[name]
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            for resource in statement["Resource"]:
                # Scoped to the parameter's resource, never a bare wildcard.
                assert resource.startswith("arn:aws:") or resource.startswith("value-of-")
                assert any(value in resource for value in parameters.values())


@pytest.mark.unit
def test_sam_policy_templates_expand_to_what_sam_generates() -> None:
    resolver = _template_resolver()
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/things"
    read = expand_sam_policy_template("DynamoDBReadPolicy", {"TableName": "things"}, resolver)
    assert read["Statement"] == [
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "dynamodb:DescribeTable",
            ],
            "Resource": [table, f"{table}/index/*"],
        }
    ]
    send = expand_sam_policy_template("SQSSendMessagePolicy", {"QueueName": "q"}, resolver)
    assert send["Statement"][0]["Resource"] == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:q"]
    start = expand_sam_policy_template(
        "StepFunctionsExecutionPolicy", {"StateMachineName": "m"}, resolver
    )
    assert start["Statement"][0]["Resource"] == [
        f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:m"
    ]
    with pytest.raises(UnresolvablePolicy, match="takes"):
        expand_sam_policy_template("SQSPollerPolicy", {"TableName": "q"}, resolver)


SYNTHETIC = """
Parameters:
  Prefix: {Type: String}
Resources:
  Things:
    Type: AWS::DynamoDB::Table
  Elsewhere:
    Type: AWS::RDS::DBCluster
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Policies: POLICIES
"""


def _synthetic_policies(tmp_path: Path, policies: str) -> dict[str, Principal]:
    path = tmp_path / "template.yaml"
    path.write_text(SYNTHETIC.replace("POLICIES", policies))
    template = load_template(path)
    resolver = Resolver.for_template(template, region=REGION, account_id=ACCOUNT, stack_name="t")
    resolver.created("Things", "things", {"Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"})
    return effective_policies(template, resolver, emulated={"Things"})


@pytest.mark.unit
def test_an_unknown_sam_policy_template_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(UnresolvablePolicy, match="SESCrudPolicy"):
        _synthetic_policies(tmp_path, "[{SESCrudPolicy: {IdentityName: x}}]")


@pytest.mark.unit
def test_what_cannot_be_resolved_is_an_error_never_a_wildcard(tmp_path: Path) -> None:
    # A parameter without default or override.
    no_default = (
        "[{Statement: [{Effect: Allow, Action: 's3:GetObject',"
        " Resource: !Sub 'arn:aws:s3:::${Prefix}/*'}]}]"
    )
    with pytest.raises(UnresolvablePolicy, match="Prefix"):
        _synthetic_policies(tmp_path, no_default)
    # A Deny on a resource the local stack lacks: dropping it would widen.
    deny = (
        "[{Statement: [{Effect: Deny, Action: 'rds-data:*',"
        " Resource: !GetAtt Elsewhere.DBClusterArn}]}]"
    )
    with pytest.raises(UnresolvablePolicy, match="Elsewhere"):
        _synthetic_policies(tmp_path, deny)
    # A managed policy that may grant what the local stack emulates.
    with pytest.raises(UnresolvablePolicy, match="AmazonDynamoDBFullAccess"):
        _synthetic_policies(tmp_path, "[AmazonDynamoDBFullAccess]")


@pytest.mark.unit
def test_allows_on_resources_not_emulated_are_left_out_and_listed(tmp_path: Path) -> None:
    policies = (
        "[{Statement: ["
        "{Sid: Ledger, Effect: Allow, Action: 'rds-data:ExecuteStatement',"
        " Resource: !GetAtt Elsewhere.DBClusterArn},"
        "{Sid: Read, Effect: Allow, Action: 'dynamodb:GetItem',"
        " Resource: [!GetAtt Things.Arn, !GetAtt Elsewhere.DBClusterArn]}]},"
        " AWSLambdaBasicExecutionRole]"
    )
    principal = _synthetic_policies(tmp_path, policies)["Fn"]
    (document,) = principal.documents
    assert document["Statement"] == [
        {
            "Sid": "Read",
            "Effect": "Allow",
            "Action": "dynamodb:GetItem",
            "Resource": [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"],
        }
    ]
    assert any("Ledger" in item and "Elsewhere" in item for item in principal.left_out)
    assert any("AWSLambdaBasicExecutionRole" in item for item in principal.left_out)


@pytest.mark.unit
def test_principals_are_found_by_type() -> None:
    template = load_template(TEMPLATE_PATH)
    found = set(principal_ids(template))
    assert found >= NAMED_PRINCIPALS
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        if kind in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            assert logical_id in found
        elif kind == "AWS::IAM::Role":
            # A role with managed policies only (the ECS execution role) makes no AWS call of
            # ours; one with inline policies is a principal.
            assert (logical_id in found) == bool(resource["Properties"].get("Policies"))


# ------------------------------------------------------------------- the users in moto ----


@pytest.mark.integration
def test_every_principal_has_a_user_with_its_template_policies(stack: Enforced) -> None:
    resolver = _template_resolver()
    expected = [p for p in principal_ids(load_template(TEMPLATE_PATH)) if resolver.is_enabled(p)]
    assert stack.iam.principals() == expected
    iam = stack.client("iam")
    for principal in stack.iam.principals():
        names = iam.list_user_policies(UserName=principal)["PolicyNames"]
        stored = [
            iam.get_user_policy(UserName=principal, PolicyName=name)["PolicyDocument"]
            for name in sorted(names)
        ]
        assert stored == list(stack.iam.policies(principal))
        # The key is the principal's own: IAM says who is calling.
        identity = stack.client("sts", principal).get_caller_identity()
        assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{principal}"
    assert stack.iam.principal_policies[WORKER].kind == "role"
    assert stack.iam.principal_policies[MACHINE].kind == "state-machine"
    assert ADMIN_USER not in stack.iam.principals()


@pytest.mark.integration
def test_the_dummy_credentials_are_refused_under_enforcement(stack: Enforced) -> None:
    dummy = boto3.session.Session(region_name=REGION).client("dynamodb")
    with pytest.raises(ClientError) as caught:
        dummy.list_tables()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.integration
def test_the_worker_reads_and_updates_invoices_and_nothing_else(stack: Enforced) -> None:
    ddb = stack.client("dynamodb", WORKER)
    invoices = stack.resources.invoices_table
    put_invoice(stack, "EMITTED")
    assert ddb.get_item(TableName=invoices, Key=key())["Item"]["status"]["S"] == "EMITTED"
    ddb.update_item(
        TableName=invoices,
        Key=key(),
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "PROCESSING"}},
    )
    refusal = refused(lambda: ddb.put_item(TableName=invoices, Item=key("other")))
    # As DynamoDB says it: the action and the resource.
    assert "dynamodb:PutItem" in str(refusal)
    assert stack.table_arn(invoices) in str(refusal)
    refused(lambda: ddb.delete_item(TableName=invoices, Key=key()))
    others = {
        stack.resources.rps_counters_table: {"counterId": {"S": "x"}},
        stack.resources.tenants_table: {"tenantId": {"S": "x"}},
        stack.resources.idempotency_table: {"id": {"S": "x"}},
    }
    for table, table_key in others.items():
        refused(functools.partial(ddb.get_item, TableName=table, Key=table_key))
        refused(
            functools.partial(
                ddb.update_item,
                TableName=table,
                Key=table_key,
                UpdateExpression="SET a = :a",
                ExpressionAttributeValues={":a": {"S": "x"}},
            )
        )
    # Untouched by the refused calls.
    item = stack.client("dynamodb").get_item(TableName=invoices, Key=key())["Item"]
    assert item["status"]["S"] == "PROCESSING"


@pytest.mark.integration
def test_the_worker_receives_from_the_requests_queue_not_the_dlq(stack: Enforced) -> None:
    admin = stack.client("sqs")
    admin.send_message(QueueUrl=stack.resources.requests_queue_url, MessageBody="request")
    admin.send_message(QueueUrl=stack.resources.dlq_url, MessageBody="dead letter")
    sqs = stack.client("sqs", WORKER)
    received = sqs.receive_message(QueueUrl=stack.resources.requests_queue_url)["Messages"]
    assert [m["Body"] for m in received] == ["request"]
    sqs.delete_message(
        QueueUrl=stack.resources.requests_queue_url, ReceiptHandle=received[0]["ReceiptHandle"]
    )
    refused(lambda: sqs.receive_message(QueueUrl=stack.resources.dlq_url))
    refused(lambda: sqs.send_message(QueueUrl=stack.resources.requests_queue_url, MessageBody="x"))


@pytest.mark.integration
def test_emit_fn_starts_the_emission_state_machine_others_may_not(stack: Enforced) -> None:
    put_invoice(stack, "EMITTED")
    assert run_execution(stack, EMIT)["status"] == "SUCCEEDED"
    for principal in (WORKER, "GetFn"):
        refusal = refused(functools.partial(run_execution, stack, principal))
        assert "states:StartExecution" in str(refusal)


@pytest.mark.integration
def test_head_of_a_missing_key_is_403_without_list_bucket_404_with_it(stack: Enforced) -> None:
    bucket = stack.resources.docs_bucket
    missing = "xml/not-written-yet.xml"
    worker = stack.client("s3", WORKER)
    refusal = refused(lambda: worker.head_object(Bucket=bucket, Key=missing))
    assert refusal.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    refused(lambda: worker.get_object(Bucket=bucket, Key=missing))
    # The same policies plus s3:ListBucket on the bucket: now S3 says the key is not there.
    statements = [s for doc in stack.iam.policies(WORKER) for s in doc["Statement"]]
    lister = stack.user(
        "worker-with-list-bucket",
        [
            *statements,
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
        ],
    ).client("s3", "worker-with-list-bucket")
    with pytest.raises(ClientError) as head:
        lister.head_object(Bucket=bucket, Key=missing)
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as get:
        lister.get_object(Bucket=bucket, Key=missing)
    assert get.value.response["Error"]["Code"] == "NoSuchKey"


@pytest.mark.integration
def test_get_object_follows_the_granted_prefixes(stack: Enforced) -> None:
    bucket = stack.resources.docs_bucket
    admin = stack.client("s3")
    admin.put_object(Bucket=bucket, Key=f"xml/{INVOICE_ID}.xml", Body=b"<rps/>")
    admin.put_object(Bucket=bucket, Key=f"nfse/{INVOICE_ID}.xml", Body=b"<nfse/>")
    worker = stack.client("s3", WORKER)
    answer = worker.get_object(Bucket=bucket, Key=f"xml/{INVOICE_ID}.xml")
    assert answer["Body"].read() == b"<rps/>"
    assert worker.head_object(Bucket=bucket, Key=f"xml/{INVOICE_ID}.xml")["ContentLength"] == 6
    refused(lambda: worker.get_object(Bucket=bucket, Key=f"nfse/{INVOICE_ID}.xml"))
    # An existing key outside the grant is refused too, not told apart from a missing one.
    refused(lambda: worker.head_object(Bucket=bucket, Key=f"nfse/{INVOICE_ID}.xml"))


@pytest.mark.integration
def test_the_worker_reads_certificate_secrets_only(stack: Enforced) -> None:
    admin = stack.client("secretsmanager")
    certificate = admin.create_secret(Name=CERT_SECRET, SecretString='{"pfx": "", "password": ""}')
    admin.create_secret(Name="elsewhere/11222333000181", SecretString="{}")
    secrets = stack.client("secretsmanager", WORKER)
    by_name = secrets.get_secret_value(SecretId=CERT_SECRET)
    assert by_name["ARN"] == certificate["ARN"]
    assert secrets.get_secret_value(SecretId=certificate["ARN"])["Name"] == CERT_SECRET
    refused(lambda: secrets.get_secret_value(SecretId="elsewhere/11222333000181"))
    # A certificate not stored yet: the grant covers the name, so the answer is "not found".
    with pytest.raises(ClientError) as missing:
        secrets.get_secret_value(SecretId="nfse/certificates/00000000000191")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


@pytest.mark.integration
def test_the_state_machine_queues_the_message_under_its_own_role(stack: Enforced) -> None:
    put_invoice(stack, "EMITTED")
    execution = run_execution(stack, EMIT)
    assert execution["status"] == "SUCCEEDED", execution
    assert queued_bodies(stack, stack.resources.requests_queue_url) == [CONTRACT_INPUT]


def _without_sqs(principals: Mapping[str, Principal]) -> dict[str, list[PolicyDocument]]:
    """The state machine's template policies minus every statement granting an SQS action."""
    documents = []
    for document in principals[MACHINE].documents:
        kept = [
            statement
            for statement in document["Statement"]
            if not any(action.lower().startswith("sqs:") for action in _actions(statement))
        ]
        if kept:
            documents.append({**document, "Statement": kept})
    return {MACHINE: documents}


@pytest.mark.integration
def test_the_state_machine_task_fails_when_its_role_cannot_send() -> None:
    with enforced_stack(vary=_without_sqs) as stack:
        remaining = [
            a for d in stack.iam.policies(MACHINE) for s in d["Statement"] for a in _actions(s)
        ]
        assert not any(action.startswith("sqs:") for action in remaining)
        assert "dynamodb:UpdateItem" in remaining  # the Catch can still mark the invoice
        put_invoice(stack, "EMITTED")
        execution = run_execution(stack, EMIT)
        assert execution["status"] == "FAILED", execution
        assert execution["error"] == "ORCHESTRATION_FAILED"
        # Every try of the Task was refused to the state machine's own user (moto names the
        # Task error SQS.SdkClientException; the cause is the refusal).
        history = stack.client("stepfunctions").get_execution_history(
            executionArn=execution["executionArn"]
        )["events"]
        causes = [
            event["taskFailedEventDetails"]["cause"]
            for event in history
            if event["type"] == "TaskFailed"
            and event["taskFailedEventDetails"].get("resourceType") == "sqs"
        ]
        assert causes  # the first try and each of the Retry's
        refusal = f"user/{MACHINE} is not authorized to perform: sqs:SendMessage"
        assert all(refusal in cause for cause in causes), causes
        assert queued_bodies(stack, stack.resources.requests_queue_url) == []
        item = stack.client("dynamodb").get_item(
            TableName=stack.resources.invoices_table, Key=key()
        )["Item"]
        assert item["status"]["S"] == "FAILED"
        assert item["error"]["M"]["code"]["S"] == "ORCHESTRATION_FAILED"


# ---------------------------------------------------------------- each patch on its own ----


@pytest.mark.integration
def test_transactions_and_batches_need_every_table(stack: Enforced) -> None:
    invoices = stack.resources.invoices_table
    counters = stack.resources.rps_counters_table
    put_invoice(stack, "EMITTED")
    worker = stack.client("dynamodb", WORKER)

    def update(table: str, table_key: dict[str, Any]) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": table,
                "Key": table_key,
                "UpdateExpression": "SET touched = :t",
                "ExpressionAttributeValues": {":t": {"S": "yes"}},
            }
        }

    worker.transact_write_items(TransactItems=[update(invoices, key())])
    refused(
        lambda: worker.transact_write_items(
            TransactItems=[update(invoices, key()), update(counters, {"counterId": {"S": "c"}})]
        )
    )
    # Each item is checked as the write it is: the worker may update, not put.
    refused(
        lambda: worker.transact_write_items(
            TransactItems=[{"Put": {"TableName": invoices, "Item": key("new")}}]
        )
    )
    worker.transact_get_items(TransactItems=[{"Get": {"TableName": invoices, "Key": key()}}])
    reader = stack.user(
        "batch-reader",
        [
            {
                "Effect": "Allow",
                "Action": "dynamodb:BatchGetItem",
                "Resource": stack.table_arn(invoices),
            }
        ],
    ).client("dynamodb", "batch-reader")
    reader.batch_get_item(RequestItems={invoices: {"Keys": [key()]}})
    refused(
        lambda: reader.batch_get_item(
            RequestItems={
                invoices: {"Keys": [key()]},
                counters: {"Keys": [{"counterId": {"S": "c"}}]},
            }
        )
    )


@pytest.mark.integration
def test_an_index_is_checked_by_its_own_arn(stack: Enforced) -> None:
    admin = stack.client("dynamodb")
    admin.create_table(
        TableName="indexed",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    table = stack.table_arn("indexed")
    query: dict[str, Any] = {
        "TableName": "indexed",
        "IndexName": "by-status",
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "EMITTED"}},
    }
    table_only = stack.user(
        "table-only", [{"Effect": "Allow", "Action": "dynamodb:Query", "Resource": table}]
    ).client("dynamodb", "table-only")
    refused(lambda: table_only.query(**query))
    with_index = stack.user(
        "with-index",
        [{"Effect": "Allow", "Action": "dynamodb:Query", "Resource": f"{table}/index/by-status"}],
    ).client("dynamodb", "with-index")
    assert with_index.query(**query)["Count"] == 0
    refused(lambda: with_index.query(**{k: v for k, v in query.items() if k != "IndexName"}))


@pytest.mark.integration
def test_sqs_batches_are_authorized_as_the_single_action(stack: Enforced) -> None:
    url = stack.resources.requests_queue_url
    stack.client("sqs").send_message(QueueUrl=url, MessageBody="one")
    worker = stack.client("sqs", WORKER)
    (message,) = worker.receive_message(QueueUrl=url)["Messages"]
    handle = message["ReceiptHandle"]
    changed = worker.change_message_visibility_batch(
        QueueUrl=url, Entries=[{"Id": "1", "ReceiptHandle": handle, "VisibilityTimeout": 0}]
    )
    assert [entry["Id"] for entry in changed["Successful"]] == ["1"]
    deleted = worker.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": "1", "ReceiptHandle": handle}]
    )
    assert [entry["Id"] for entry in deleted["Successful"]] == ["1"]
    # Without sqs:SendMessage, its batch form is refused too.
    refused(
        lambda: worker.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])
    )


@pytest.mark.integration
def test_kms_keys_are_checked_by_their_arn_however_named(stack: Enforced) -> None:
    admin = stack.client("kms")
    key_id = stack.resources.kms_key_id
    key_arn = admin.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    admin.create_alias(AliasName="alias/nfse-test", TargetKeyId=key_id)
    other = admin.create_key(Description="not the stack's")["KeyMetadata"]["KeyId"]
    worker = stack.client("kms", WORKER)
    for name in (key_id, key_arn, "alias/nfse-test"):
        worker.generate_data_key(KeyId=name, KeySpec="AES_256")
    refused(lambda: worker.generate_data_key(KeyId=other, KeySpec="AES_256"))
    # Decrypt without KeyId: the key recorded in the ciphertext.
    own = admin.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    assert worker.decrypt(CiphertextBlob=own)["Plaintext"] == b"secret"
    foreign = admin.encrypt(KeyId=other, Plaintext=b"secret")["CiphertextBlob"]
    refused(lambda: worker.decrypt(CiphertextBlob=foreign))


@pytest.mark.integration
def test_a_condition_applies_only_when_it_is_met(stack: Enforced) -> None:
    invoices = stack.resources.invoices_table
    put_invoice(stack, "EMITTED")
    read = {"Action": "dynamodb:GetItem", "Resource": stack.table_arn(invoices)}

    def reader(name: str, *statements: dict[str, Any]) -> Any:
        return stack.user(name, list(statements)).client("dynamodb", name)

    def region_is(region: str) -> dict[str, Any]:
        return {"StringEquals": {"aws:RequestedRegion": region}}

    unknown = {"StringEquals": {"aws:SourceVpce": "vpce-1234"}}
    met = reader("met", {"Effect": "Allow", **read, "Condition": region_is(REGION)})
    assert met.get_item(TableName=invoices, Key=key())["Item"]
    unmet = reader("unmet", {"Effect": "Allow", **read, "Condition": region_is("eu-west-1")})
    refused(lambda: unmet.get_item(TableName=invoices, Key=key()))
    # A condition the local stack cannot evaluate never allows...
    undecided = reader("undecided", {"Effect": "Allow", **read, "Condition": unknown})
    refused(lambda: undecided.get_item(TableName=invoices, Key=key()))
    # ...an unmet one on a Deny denies nothing (moto would deny)...
    deny_unmet = reader(
        "deny-unmet",
        {"Effect": "Allow", **read},
        {"Effect": "Deny", **read, "Condition": region_is("eu-west-1")},
    )
    assert deny_unmet.get_item(TableName=invoices, Key=key())["Item"]
    # ...and a Deny the local stack cannot evaluate applies.
    deny_undecided = reader(
        "deny-undecided",
        {"Effect": "Allow", **read},
        {"Effect": "Deny", **read, "Condition": unknown},
    )
    refused(lambda: deny_undecided.get_item(TableName=invoices, Key=key()))


@pytest.mark.integration
def test_not_resource_and_wildcards_read_as_iam_reads_them(stack: Enforced) -> None:
    invoices = stack.resources.invoices_table
    tenants = stack.resources.tenants_table
    put_invoice(stack, "EMITTED")
    everything_but_tenants = stack.user(
        "not-tenants",
        [
            {
                "Effect": "Allow",
                "Action": "dynamodb:GetItem",
                "NotResource": stack.table_arn(tenants),
            }
        ],
    ).client("dynamodb", "not-tenants")
    assert everything_but_tenants.get_item(TableName=invoices, Key=key())["Item"]
    refused(
        lambda: everything_but_tenants.get_item(TableName=tenants, Key={"tenantId": {"S": "x"}})
    )
    # "." is a literal dot in a policy (moto read it as "any character"); actions ignore case.
    dotted = stack.user(
        "dotted",
        [
            {
                "Effect": "Allow",
                "Action": "DYNAMODB:getitem",
                "Resource": stack.table_arn(invoices).replace("-invoices-", "-invoices."),
            },
            {"Effect": "Allow", "Action": "dynamodb:getITEM", "Resource": stack.table_arn(tenants)},
        ],
    ).client("dynamodb", "dotted")
    refused(lambda: dotted.get_item(TableName=invoices, Key=key()))
    dotted.get_item(TableName=tenants, Key={"tenantId": {"S": "x"}})


@pytest.mark.integration
def test_enforcement_and_the_patches_are_undone_on_exit() -> None:
    patched = [
        (ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action"),
        (IAMPolicyStatement, "is_action_permitted"),
        (IAMPolicyStatement, "_check_element_matches"),
        (IAMRequestBase, "check_action_permitted"),
        (S3Response, "get_object"),
        (S3Response, "head_object"),
        (S3Response, "_authenticate_and_authorize_s3_action"),
        (state_task_service_sqs, "boto_client_for"),
    ]
    before = [getattr(owner, name) for owner, name in patched]
    setting = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    with aws_iam_parity({}), iam_enforced():
        assert moto_settings.INITIAL_NO_AUTH_ACTION_COUNT == 0
        assert [getattr(owner, name) for owner, name in patched] != before
    assert setting == moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    assert [getattr(owner, name) for owner, name in patched] == before
    assert "_authenticate_and_authorize_s3_action" not in vars(S3Response)


@pytest.mark.integration
def test_the_same_holds_for_a_moto_server_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded stack's form: a ThreadedMotoServer, resources and users over HTTP."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's Task clients call back into the server on MOTO_PORT.
    monkeypatch.setenv("MOTO_PORT", str(port))
    try:
        requests.post(
            f"{endpoint}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        ).raise_for_status()
        registry: dict[str, dict[str, str]] = {}
        with aws_iam_parity(registry):
            session = boto3.session.Session(region_name=REGION)
            resources = create_resources(
                session, template_path=TEMPLATE_PATH, endpoint_url=endpoint
            )
            iam = LocalIam.create(session, resources, template_path=TEMPLATE_PATH)
            registry.update(iam.task_credentials())
            with iam_enforced():
                stack = Enforced(resources, iam)
                put_invoice(stack, "EMITTED")
                worker = stack.client("dynamodb", WORKER)
                assert worker.get_item(TableName=resources.invoices_table, Key=key())["Item"]
                refused(lambda: worker.put_item(TableName=resources.invoices_table, Item=key("x")))
                s3 = stack.client("s3", WORKER)
                refused(lambda: s3.head_object(Bucket=resources.docs_bucket, Key="xml/none.xml"))
                execution = run_execution(stack, EMIT)
                assert execution["status"] == "SUCCEEDED", execution
                assert queued_bodies(stack, resources.requests_queue_url) == [CONTRACT_INPUT]
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)
        server.stop()
