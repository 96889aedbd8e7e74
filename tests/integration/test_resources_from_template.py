"""create_resources makes in moto what template.yaml declares, found by Type, wired as in AWS."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from moto.server import ThreadedMotoServer
from pycognito.aws_srp import AWSSRP

from nfse_core.config import ApiSettings, QuerySettings
from nfse_local.cfn import load_template
from nfse_local.resources import LocalResources, create_resources

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def local(session: boto3.session.Session) -> LocalResources:
    return create_resources(session, template_path=TEMPLATE_PATH)


def template_resources(kind: str) -> dict[str, Any]:
    resources: dict[str, Any] = load_template(TEMPLATE_PATH)["Resources"]
    return {lid: res for lid, res in resources.items() if res["Type"] == kind}


def test_every_table_exists_with_its_key_billing_ttl_and_sse(
    session: boto3.session.Session, local: LocalResources
) -> None:
    ddb = session.client("dynamodb")
    tables = template_resources("AWS::DynamoDB::Table")
    assert set(tables) <= set(local.physical_ids)
    for logical_id, res in tables.items():
        name = local.physical_ids[logical_id]
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == res["Properties"]["KeySchema"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["SSEDescription"]["Status"] in {"ENABLED", "ENABLING"}
        backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        pitr = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
        assert pitr == "ENABLED"
    ttl = ddb.describe_time_to_live(TableName=local.idempotency_table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}
    assert local.invoices_table == local.physical_ids["InvoicesTable"]


def test_bucket_is_versioned_encrypted_and_private(
    session: boto3.session.Session, local: LocalResources
) -> None:
    s3 = session.client("s3")
    assert s3.get_bucket_versioning(Bucket=local.docs_bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=local.docs_bucket)["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_arn = rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"]
    assert key_arn.endswith(local.kms_key_id)
    block = s3.get_public_access_block(Bucket=local.docs_bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())


def test_queue_redrive_points_at_the_dlq_with_the_template_count(
    session: boto3.session.Session, local: LocalResources
) -> None:
    sqs = session.client("sqs")
    default = load_template(TEMPLATE_PATH)["Parameters"]["MaxReceiveCount"]["Default"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=local.requests_queue_url, AttributeNames=["All"]
    )["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=local.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == int(default) == 5
    assert attributes["VisibilityTimeout"] == "120"
    dlq = sqs.get_queue_attributes(QueueUrl=local.dlq_url, AttributeNames=["All"])["Attributes"]
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)


def test_max_receive_count_can_be_overridden(session: boto3.session.Session) -> None:
    local = create_resources(
        session,
        template_path=TEMPLATE_PATH,
        prefix="other",
        parameter_overrides={"MaxReceiveCount": "2"},
    )
    attributes = session.client("sqs").get_queue_attributes(
        QueueUrl=local.requests_queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 2
    assert local.invoices_table.startswith("other-")


def test_state_machine_is_express_with_the_substituted_asl(
    session: boto3.session.Session, local: LocalResources
) -> None:
    machine = session.client("stepfunctions").describe_state_machine(
        stateMachineArn=local.state_machine_arn
    )
    assert machine["type"] == "EXPRESS"
    assert machine["roleArn"].startswith("arn:aws:iam::")
    definition = json.loads(machine["definition"])
    enqueue = definition["States"]["EnqueueRequest"]["Parameters"]
    assert enqueue["QueueUrl"] == local.requests_queue_url
    mark = definition["States"]["MarkFailed"]["Parameters"]
    assert mark["TableName"] == local.invoices_table
    assert "${" not in machine["definition"]


def test_user_pool_has_tenant_attribute_and_client_flows(
    session: boto3.session.Session, local: LocalResources
) -> None:
    idp = session.client("cognito-idp")
    pool = idp.describe_user_pool(UserPoolId=local.user_pool_id)["UserPool"]
    assert "custom:tenant_id" in {a["Name"] for a in pool["SchemaAttributes"]}
    client = idp.describe_user_pool_client(
        UserPoolId=local.user_pool_id, ClientId=local.user_pool_client_id
    )["UserPoolClient"]
    # SRP only: the password itself never travels (template.yaml, UserPoolClient).
    assert set(client["ExplicitAuthFlows"]) == {"ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"}
    # The pool issues tokens carrying the tenant claim.
    idp.admin_create_user(
        UserPoolId=local.user_pool_id,
        Username="erp@acme.example",
        UserAttributes=[
            {"Name": "email", "Value": "erp@acme.example"},
            {"Name": "custom:tenant_id", "Value": "acme"},
        ],
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(
        UserPoolId=local.user_pool_id,
        Username="erp@acme.example",
        Password="Correct-Horse-42",
        Permanent=True,
    )
    tokens = AWSSRP(
        username="erp@acme.example",
        password="Correct-Horse-42",
        pool_id=local.user_pool_id,
        client_id=local.user_pool_client_id,
        client=idp,
    ).authenticate_user()["AuthenticationResult"]
    assert tokens["IdToken"].count(".") == 2


def test_api_env_is_what_the_handlers_read(local: LocalResources) -> None:
    env = local.api_env()
    settings = ApiSettings.from_env(env)
    assert settings.invoices_table == local.invoices_table
    assert settings.idempotency_table == local.idempotency_table
    assert settings.tenants_table == local.tenants_table
    assert settings.rps_counters_table == local.rps_counters_table
    assert settings.docs_bucket == local.docs_bucket
    assert settings.state_machine_arn == local.state_machine_arn
    assert settings.docs_kms_key_id.endswith(local.kms_key_id)
    assert (
        QuerySettings.from_env(local.function_env("GetFn")).invoices_table == local.invoices_table
    )
    assert "AWS_ENDPOINT_URL" not in env  # in-process moto: boto3 is patched, no endpoint


def test_worker_and_processor_env_leave_out_only_aurora(local: LocalResources) -> None:
    worker = local.worker_env()
    assert worker["REQUESTS_QUEUE_URL"] == local.requests_queue_url
    assert worker["INVOICES_TABLE"] == local.invoices_table
    assert worker["DOCS_BUCKET"] == local.docs_bucket
    assert worker["PROVIDER_ENVIRONMENT"] == "homologacao"
    assert worker["WORKER_CONCURRENCY"] == "4"
    processor = local.processor_env()
    assert processor["DLQ_URL"] == local.dlq_url
    assert processor["CERT_SECRET_PREFIX"] == "nfse/certificates"
    assert local.not_emulated["WorkerTaskDefinition"] == ("DB_CLUSTER_ARN", "DB_SECRET_ARN")
    assert local.not_emulated["ProcessorFn"] == ("DB_CLUSTER_ARN", "DB_SECRET_ARN")


def test_a_table_added_to_the_template_appears_locally(
    session: boto3.session.Session, tmp_path: Path
) -> None:
    # Resources are found by Type: a copy of the template with one more table (and one
    # disabled by a false Condition) makes one more table, and not the disabled one.
    shutil.copytree(ROOT / "statemachine", tmp_path / "statemachine")
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    extra = {
        "AuditTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "auditId", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "auditId", "KeyType": "HASH"}],
            },
        },
        "ProdOnlyTable": {
            "Type": "AWS::DynamoDB::Table",
            "Condition": "IsProd",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
            },
        },
    }
    block = yaml.safe_dump(extra, default_flow_style=False)
    indented = "".join("  " + line + "\n" for line in block.splitlines())
    text = text.replace("\nResources:\n", "\nResources:\n" + indented, 1)
    (tmp_path / "template.yaml").write_text(text, encoding="utf-8")

    local = create_resources(session, template_path=tmp_path / "template.yaml", prefix="grown")
    assert local.physical_ids["AuditTable"] == "grown-audit-table"
    assert "ProdOnlyTable" not in local.physical_ids
    table = session.client("dynamodb").describe_table(TableName="grown-audit-table")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "auditId", "KeyType": "HASH"}]


def test_against_a_moto_server_the_env_points_at_it() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        local = create_resources(session, template_path=TEMPLATE_PATH, endpoint_url=endpoint)
        env = local.api_env()
        assert env["AWS_ENDPOINT_URL"] == endpoint
        assert env["AWS_DEFAULT_REGION"] == "us-east-1"
        tables = session.client("dynamodb", endpoint_url=endpoint).list_tables()["TableNames"]
        assert local.invoices_table in tables
    finally:
        server.stop()
