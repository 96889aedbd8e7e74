"""The IAM map of template.yaml (nfse_local.iam_map): every AWS call the code makes is granted to
the role that makes it, and nothing more is granted without a written reason.

The last tests run the checker on a small synthetic template and source tree, to show that a
boto3 call added without its permission (or a wildcard without a reason) fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nfse_local.cfn import load_template, walk_refs
from nfse_local.iam_map.grants import (
    MANAGED_POLICY_REASONS,
    arn_tail,
    is_granted,
    statements_of,
    unexplained_wildcards,
    unused_grants,
)
from nfse_local.iam_map.needs import needs_of_calls
from nfse_local.iam_map.project import ROOT, components, needs_of, render_map, template, the_map
from nfse_local.iam_map.sources import build_index, settings_aliases

pytestmark = pytest.mark.unit

COMPONENT_NAMES = sorted(components(template()))


def test_components_are_the_functions_the_state_machine_and_the_worker() -> None:
    assert COMPONENT_NAMES == [
        "EmissionStateMachine",
        "EmitFn",
        "GetFn",
        "MigrateFn",
        "ProcessorFn",
        "SweeperFn",
        "WorkerTaskRole",
    ]


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_every_aws_call_is_placed_on_a_resource(name: str) -> None:
    _, problems = needs_of(name)
    assert problems == []


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_every_aws_call_is_granted(name: str) -> None:
    component = components(template())[name]
    grants, _ = statements_of(template(), component)
    missing = [f"{n.action} on {n.resource} ({n.why})" for n in sorted(the_map()[name])]
    missing = [
        text
        for text, need in zip(missing, sorted(the_map()[name]), strict=True)
        if not is_granted(need, grants)
    ]
    assert missing == []


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_nothing_is_granted_that_the_code_does_not_use(name: str) -> None:
    grants, _ = statements_of(template(), components(template())[name])
    assert unused_grants(template(), the_map()[name], grants) == []


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_managed_policies_have_reasons(name: str) -> None:
    _, managed = statements_of(template(), components(template())[name])
    assert [m for m in managed if m not in MANAGED_POLICY_REASONS] == []


def test_no_wildcard_without_a_reason() -> None:
    assert unexplained_wildcards(template()) == []


# Roles an AWS service assumes to deliver logs (no code of ours runs with them): the service,
# and the one log group their inline policy may name.
DELIVERY_ROLES = {"VpcFlowLogRole": ("vpc-flow-logs.amazonaws.com", "VpcFlowLogGroup")}


def test_every_role_in_the_template_is_a_mapped_component_or_explained() -> None:
    roles = {lid for lid, r in template()["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    # The execution role only pulls the image and writes logs (ECS agent, not our code); the
    # API Gateway role is the account-level logging role. Both carry managed policies only.
    for lid in roles - set(COMPONENT_NAMES):
        props = template()["Resources"][lid]["Properties"]
        if lid in DELIVERY_ROLES:
            service, log_group = DELIVERY_ROLES[lid]
            principals = [s["Principal"] for s in props["AssumeRolePolicyDocument"]["Statement"]]
            assert principals == [{"Service": service}], (lid, principals)
            statements = [s for p in props["Policies"] for s in p["PolicyDocument"]["Statement"]]
            for statement in statements:
                assert all(set(walk_refs(r)) == {log_group} for r in statement["Resource"]), (
                    lid,
                    statement,
                )
            continue
        assert not props.get("Policies"), f"{lid}: inline policies of a role no test maps"
        tails = [arn_tail(a) for a in props.get("ManagedPolicyArns", [])]
        assert all(t in MANAGED_POLICY_REASONS for t in tails), (lid, tails)


def test_the_map_finds_the_known_calls() -> None:
    """A guard on the checker itself: it must see these, or it sees nothing."""
    expected = {
        ("EmitFn", "dynamodb:PutItem", "InvoicesTable"),
        ("EmitFn", "dynamodb:UpdateItem", "RpsCountersTable"),
        ("EmitFn", "dynamodb:GetItem", "TenantsTable"),
        ("EmitFn", "dynamodb:DeleteItem", "IdempotencyTable"),
        ("EmitFn", "s3:PutObject", "DocsBucket"),
        ("EmitFn", "states:StartExecution", "EmissionStateMachine"),
        ("EmitFn", "kms:GenerateDataKey", "KmsKey"),
        ("GetFn", "dynamodb:GetItem", "InvoicesTable"),
        ("GetFn", "kms:Decrypt", "KmsKey"),
        ("ProcessorFn", "sqs:ReceiveMessage", "RequestsDLQ"),
        ("ProcessorFn", "sqs:DeleteMessage", "RequestsDLQ"),
        ("ProcessorFn", "secretsmanager:GetSecretValue", "param:CertSecretPrefix"),
        ("ProcessorFn", "secretsmanager:GetSecretValue", "LedgerAppSecret"),
        ("ProcessorFn", "rds-data:ExecuteStatement", "DbCluster"),
        ("WorkerTaskRole", "sqs:ReceiveMessage", "RequestsQueue"),
        ("WorkerTaskRole", "sqs:ChangeMessageVisibility", "RequestsQueue"),
        ("WorkerTaskRole", "s3:GetObject", "DocsBucket"),
        ("WorkerTaskRole", "dynamodb:UpdateItem", "InvoicesTable"),
        ("WorkerTaskRole", "rds-data:ExecuteStatement", "DbCluster"),
        ("EmissionStateMachine", "sqs:SendMessage", "RequestsQueue"),
        ("EmissionStateMachine", "dynamodb:UpdateItem", "InvoicesTable"),
        ("EmissionStateMachine", "kms:GenerateDataKey", "KmsKey"),
    }
    found = {(n.component, n.action, n.resource) for needs in the_map().values() for n in needs}
    assert expected - found == set()
    # GetFn reads; it must not be thought to write, nor to touch other tables.
    assert {(n.action, n.resource) for n in the_map()["GetFn"]} == {
        ("dynamodb:GetItem", "InvoicesTable"),
        ("kms:Decrypt", "KmsKey"),
    }


def test_docs_security_lists_the_current_map() -> None:
    docs = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert render_map() in docs, "regenerate the table: python -m nfse_local.iam_map"


# ------------------------------------------------------- the checker on a synthetic case ----

SYNTHETIC_TEMPLATE = """
Parameters:
  Stage: {Type: String}
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:
      KeyPolicy: {Statement: []}
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      SSESpecification: {SSEEnabled: true, SSEType: KMS, KMSMasterKeyId: !Ref Key}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      CodeUri: fn/
      Environment:
        Variables:
          THINGS_TABLE: !Ref Things
      Policies:
        - DynamoDBReadPolicy:
            TableName: !Ref Things
        - Statement:
            - Sid: Kms
              Effect: Allow
              Action: kms:Decrypt
              Resource: !GetAtt Key.Arn
"""

SYNTHETIC_CONFIG = """
from pydantic import BaseModel, Field
class Settings(BaseModel):
    things_table: str = Field(alias="THINGS_TABLE")
"""

SYNTHETIC_STORE = """
class Things:
    def __init__(self, client, table):
        self._ddb = client
        self._table = table

    def get(self, key):
        return self._ddb.get_item(TableName=self._table, Key=key)

    def forget(self, key):
        self._ddb.delete_item(TableName=self._table, Key=key)

class Unused:
    def put(self, client):
        client.put_item(TableName="x", Item={})
"""

SYNTHETIC_APP = """
import boto3
from store.things import Things

def handler(event, context, settings=None):
    things = Things(boto3.client("dynamodb"), settings.things_table)
    return things.get(event["key"])
"""


def _synthetic(tmp_path: Path, app: str = SYNTHETIC_APP, tpl: str = SYNTHETIC_TEMPLATE) -> Any:
    (tmp_path / "fn").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "fn" / "app.py").write_text(app)
    (tmp_path / "store" / "things.py").write_text(SYNTHETIC_STORE)
    (tmp_path / "config.py").write_text(SYNTHETIC_CONFIG)
    (tmp_path / "template.yaml").write_text(tpl)
    synthetic = load_template(tmp_path / "template.yaml")
    names = settings_aliases(tmp_path / "config.py")
    idx = build_index(tmp_path, ("fn", "store"), names)
    component = components(synthetic)["Fn"]
    needs, problems = needs_of_calls(synthetic, idx, names, component)
    grants, _ = statements_of(synthetic, component)
    missing = sorted((n.action, n.resource) for n in needs if not is_granted(n, grants))
    return needs, problems, missing, unused_grants(synthetic, needs, grants), synthetic


def test_checker_passes_a_granted_call(tmp_path: Path) -> None:
    needs, problems, missing, _, _ = _synthetic(tmp_path)
    assert problems == []
    assert {(n.action, n.resource) for n in needs} == {
        ("dynamodb:GetItem", "Things"),
        ("kms:Decrypt", "Key"),
    }
    assert missing == []


def test_checker_fails_a_boto3_call_added_without_its_permission(tmp_path: Path) -> None:
    app = SYNTHETIC_APP.replace(
        "    return things.get(", '    things.forget(event["key"])\n    return things.get('
    )
    _, problems, missing, _, _ = _synthetic(tmp_path, app)
    assert problems == []
    assert missing == [("dynamodb:DeleteItem", "Things")]


def test_checker_fails_a_missing_kms_grant(tmp_path: Path) -> None:
    tpl = SYNTHETIC_TEMPLATE.replace("Action: kms:Decrypt", "Action: kms:Encrypt")
    _, _, missing, unused, _ = _synthetic(tmp_path, tpl=tpl)
    assert missing == [("kms:Decrypt", "Key")]
    assert any("kms:Encrypt" in u for u in unused)


def test_checker_fails_a_call_it_cannot_place(tmp_path: Path) -> None:
    app = SYNTHETIC_APP.replace("settings.things_table", '"hard-coded-table"')
    _, problems, _, _, _ = _synthetic(tmp_path, app)
    assert len(problems) == 1 and "cannot tell the resource" in problems[0]


def test_checker_flags_unused_inline_grants_and_unexplained_wildcards(tmp_path: Path) -> None:
    tpl = SYNTHETIC_TEMPLATE.replace(
        "              Resource: !GetAtt Key.Arn\n",
        "              Resource: !GetAtt Key.Arn\n"
        "            - Sid: Everything\n"
        "              Effect: Allow\n"
        "              Action: dynamodb:*\n"
        '              Resource: "*"\n',
    )
    _, _, missing, _, synthetic = _synthetic(tmp_path, tpl=tpl)
    assert missing == []
    assert len(unexplained_wildcards(synthetic)) == 1
    synthetic["Resources"]["Fn"]["Metadata"] = {
        "IamReasons": {"Everything": "a reason long enough to be a reason"}
    }
    assert unexplained_wildcards(synthetic) == []
    assert unused_grants(synthetic, set(), statements_of(synthetic, components(synthetic)["Fn"])[0])
