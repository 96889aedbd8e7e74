"""The IAM map analyzer (nfse_local.iam_map) on small synthetic inputs: what it finds in code, how
it places calls on resources, and which grants it accepts or reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nfse_local.iam_map import __main__ as cli
from nfse_local.iam_map.grants import (
    Grant,
    is_granted,
    statements_of,
    unexplained_wildcards,
    unused_grants,
)
from nfse_local.iam_map.needs import (
    Component,
    Need,
    add_kms,
    encryption_key,
    needs_of_calls,
    needs_of_state_machine,
    resource_key,
)
from nfse_local.iam_map.reach import reach
from nfse_local.iam_map.sources import (
    boto_operations,
    build_index,
    client_services,
    settings_aliases,
)

pytestmark = pytest.mark.unit

TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "CertSecretPrefix": {"Type": "String", "Description": "Encrypted with KeyArn"},
        "Stage": {"Type": "String"},
    },
    "Resources": {
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": []}}},
        "Plain": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "Sealed": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {"SSESpecification": {"KMSMasterKeyId": {"Ref": "Key"}}},
        },
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Docs": {"Type": "AWS::S3::Bucket", "Properties": {}},
    },
}


def _grant(actions: tuple[str, ...], resources: tuple[str, ...], sid: str | None = None) -> Grant:
    return Grant("Fn", "Fn", actions, resources, sid, "inline")


def _function(policies: list[Any], **props: Any) -> dict[str, Any]:
    resources = dict(TEMPLATE["Resources"])
    resources["Fn"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {"Handler": "app.handler", "CodeUri": "fn/", "Policies": policies, **props},
    }
    return {**TEMPLATE, "Resources": resources}


FN = Component("Fn", "function", "Fn")


# ------------------------------------------------------------------------------ sources ----


def test_settings_aliases_reads_the_field_aliases(tmp_path: Path) -> None:
    config = tmp_path / "config.py"
    config.write_text(
        "class Settings:\n"
        '    things: str = Field(alias="THINGS_TABLE")\n'
        "    other: int = Field(default=1)\n"
    )
    assert settings_aliases(config) == {"things": "THINGS_TABLE"}


def test_client_services_are_the_services_clients_are_built_for(tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text('import boto3\nA = boto3.client("sqs")\nB = _client("s3")\nC = other("kms")\n')
    assert client_services([code]) == {"sqs", "s3"}


def test_boto_operations_name_the_iam_actions_with_their_exceptions() -> None:
    by_op, actions = boto_operations(["s3", "dynamodb"])
    assert by_op["put_item"] == ("dynamodb",)
    assert actions[("dynamodb", "put_item")] == "dynamodb:PutItem"
    assert actions[("s3", "head_object")] == "s3:GetObject"
    assert actions[("s3", "list_objects_v2")] == "s3:ListBucket"


# ---------------------------------------------------------------------------- reachability ----

STORE = """
class Things:
    def __init__(self, client, table):
        self._ddb = client
        self._table = table

    def read(self, key):
        return self._ddb.get_item(TableName=self._table, Key=key)

class NeverBuilt:
    def read(self, key):
        return self._ddb.delete_item(TableName="x", Key=key)
"""

APP = """
import boto3
from store import Things

def handler(event, context, settings=None):
    return Things(boto3.client("dynamodb"), settings.plain_table).read(event["key"])
"""


def _index(tmp_path: Path, app: str = APP) -> Any:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(app)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "__init__.py").write_text(STORE)
    return build_index(tmp_path, ("fn", "store"), {"plain_table": "PLAIN_TABLE"})


def test_a_method_counts_only_when_its_class_is_constructed(tmp_path: Path) -> None:
    found = reach(_index(tmp_path), ["fn.app"])
    assert {(c.op, c.cls) for c in found.calls()} == {("get_item", "Things")}
    assert found.live == {"Things"}


def test_a_call_is_placed_on_the_resource_its_class_was_built_with(tmp_path: Path) -> None:
    component = Component("Fn", "function", "Fn", ("fn.app",), {"PLAIN_TABLE": {"Ref": "Plain"}})
    needs, problems = needs_of_calls(
        TEMPLATE, _index(tmp_path), {"plain_table": "PLAIN_TABLE"}, component
    )
    assert problems == []
    assert {(n.action, n.resource) for n in needs} == {("dynamodb:GetItem", "Plain")}


def test_a_call_on_an_unknown_resource_is_a_problem(tmp_path: Path) -> None:
    component = Component("Fn", "function", "Fn", ("fn.app",), {})
    needs, problems = needs_of_calls(
        TEMPLATE, _index(tmp_path), {"plain_table": "PLAIN_TABLE"}, component
    )
    assert needs == set()
    assert len(problems) == 1 and "cannot tell the resource" in problems[0]


# ---------------------------------------------------------------------------------- needs ----


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"Ref": "Plain"}, "Plain"),
        ({"Fn::GetAtt": ["Queue", "Arn"]}, "Queue"),
        ({"Fn::GetAtt": "Queue.Arn"}, "Queue"),
        ({"Fn::Sub": "${Docs.Arn}/*"}, "Docs"),
        ({"Ref": "CertSecretPrefix"}, "param:CertSecretPrefix"),
        ({"Ref": "Nothing"}, None),
        ("*", "*"),
        ("literal", None),
    ],
)
def test_resource_key(value: Any, key: str | None) -> None:
    assert resource_key(TEMPLATE, value) == key


def test_encryption_key_of_tables_and_secret_parameters() -> None:
    assert encryption_key(TEMPLATE, "Sealed") == "Key"
    assert encryption_key(TEMPLATE, "Plain") is None
    assert encryption_key(TEMPLATE, "param:CertSecretPrefix") == "Key"


def test_kms_needs_follow_reads_and_writes_on_encrypted_resources() -> None:
    needs = {
        Need("Fn", "dynamodb:GetItem", "Sealed", "read"),
        Need("Fn", "dynamodb:PutItem", "Sealed", "write"),
        Need("Fn", "dynamodb:PutItem", "Plain", "write"),
    }
    added = {(n.action, n.resource) for n in add_kms(TEMPLATE, needs)} - {
        (n.action, n.resource) for n in needs
    }
    assert added == {("kms:Decrypt", "Key"), ("kms:GenerateDataKey", "Key")}


def test_state_machine_needs_are_its_task_integrations(tmp_path: Path) -> None:
    asl = {
        "States": {
            "Send": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": "${QueueUrl}"},
            },
            "Done": {"Type": "Succeed"},
        }
    }
    (tmp_path / "sm.asl.json").write_text(json.dumps(asl))
    template = {
        **TEMPLATE,
        "Resources": {
            **TEMPLATE["Resources"],
            "Machine": {
                "Type": "AWS::Serverless::StateMachine",
                "Properties": {
                    "DefinitionUri": "sm.asl.json",
                    "DefinitionSubstitutions": {"QueueUrl": {"Ref": "Queue"}},
                },
            },
        },
    }
    component = Component("Machine", "state-machine", "Machine")
    needs, problems = needs_of_state_machine(template, tmp_path, component)
    assert problems == []
    assert {(n.action, n.resource) for n in needs} == {("sqs:SendMessage", "Queue")}


# --------------------------------------------------------------------------------- grants ----


def test_a_need_is_granted_by_a_matching_action_on_its_resource() -> None:
    need = Need("Fn", "dynamodb:GetItem", "Plain", "read")
    assert is_granted(need, [_grant(("dynamodb:GetItem",), ("Plain",))])
    assert is_granted(need, [_grant(("dynamodb:Get*",), ("Plain",))])
    assert is_granted(need, [_grant(("DynamoDB:getitem",), ("Plain",))])


def test_a_need_is_not_granted_by_another_action_or_resource() -> None:
    need = Need("Fn", "dynamodb:GetItem", "Plain", "read")
    assert not is_granted(need, [_grant(("dynamodb:PutItem",), ("Plain",))])
    assert not is_granted(need, [_grant(("dynamodb:GetItem",), ("Sealed",))])
    assert not is_granted(need, [])


def test_a_wildcard_resource_grants_every_resource() -> None:
    need = Need("Fn", "dynamodb:GetItem", "Plain", "read")
    assert is_granted(need, [_grant(("dynamodb:GetItem",), ("*",))])


def test_statements_of_a_function_read_sam_templates_inline_statements_and_managed() -> None:
    template = _function(
        [
            "arn:aws:iam::aws:policy/SomethingManaged",
            {"DynamoDBReadPolicy": {"TableName": {"Ref": "Plain"}}},
            {
                "Statement": [
                    {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Ref": "Queue"}},
                    {"Effect": "Deny", "Action": "*", "Resource": "*"},
                ]
            },
        ],
        Tracing="Active",
    )
    grants, managed = statements_of(template, FN)
    assert [(g.origin, g.resources) for g in grants] == [
        ("DynamoDBReadPolicy", ("Plain",)),
        ("inline", ("Queue",)),
    ]
    assert "dynamodb:GetItem" in grants[0].actions
    assert managed == ["SomethingManaged", "AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"]


def test_an_unknown_sam_policy_template_is_an_error() -> None:
    with pytest.raises(ValueError, match="NoSuchPolicy"):
        statements_of(_function([{"NoSuchPolicy": {"X": "y"}}]), FN)


def test_unused_grants_report_inline_actions_and_whole_sam_templates() -> None:
    template = _function([])
    needs = {Need("Fn", "dynamodb:GetItem", "Plain", "read")}
    inline = _grant(("dynamodb:GetItem", "dynamodb:PutItem"), ("Plain",))
    sam = Grant("Fn", "Fn", ("sqs:SendMessage",), ("Queue",), None, "SQSSendMessagePolicy")
    problems = unused_grants(template, needs, [inline, sam])
    assert len(problems) == 2
    assert "dynamodb:PutItem" in problems[0] and "no code needs it" in problems[0]
    assert "SQSSendMessagePolicy" in problems[1] and "unused" in problems[1]


def test_an_unused_grant_is_accepted_only_with_a_real_reason() -> None:
    template = _function([])
    template["Resources"]["Fn"]["Metadata"] = {"IamReasons": {"Spare": "too short"}}
    assert unused_grants(template, set(), [_grant(("sqs:SendMessage",), ("Queue",), "Spare")])
    template["Resources"]["Fn"]["Metadata"] = {
        "IamReasons": {"Spare": "a reason long enough to be a reason"}
    }
    assert unused_grants(template, set(), [_grant(("sqs:SendMessage",), ("Queue",), "Spare")]) == []


@pytest.mark.parametrize(
    ("action", "resource", "flagged"),
    [
        ("*", {"Ref": "Plain"}, True),
        ("dynamodb:*", {"Ref": "Plain"}, True),
        ("dynamodb:GetItem", "*", True),
        ("dynamodb:Get*", {"Ref": "Plain"}, False),
        ("dynamodb:GetItem", {"Ref": "Plain"}, False),
    ],
)
def test_wildcards_need_a_reason(action: str, resource: Any, flagged: bool) -> None:
    statement = {"Sid": "S", "Effect": "Allow", "Action": action, "Resource": resource}
    template = _function([{"Statement": [statement]}])
    assert bool(unexplained_wildcards(template)) is flagged
    template["Resources"]["Fn"]["Metadata"] = {
        "IamReasons": {"S": "a reason long enough to be a reason"}
    }
    assert unexplained_wildcards(template) == []


# ------------------------------------------------------------------------------------ CLI ----


def test_the_cli_prints_the_map_when_there_are_no_gaps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "gaps", list)
    monkeypatch.setattr(cli, "render_map", lambda: "| the map |")
    assert cli.main() == 0
    assert capsys.readouterr().out == "| the map |\n"


def test_the_cli_fails_with_the_gaps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "gaps", lambda: ["Fn: dynamodb:PutItem on Plain is not granted"])
    assert cli.main() == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Fn: dynamodb:PutItem on Plain is not granted" in captured.err


PORTS = """
from typing import Protocol

class Lookup(Protocol):
    def get(self, key): ...

class Things(Lookup, Protocol):
    def put(self, key): ...
"""

SERVICE = """
import boto3
from ports import Things
from store import Table

class Service:
    def __init__(self, things: Things):
        self._things = things

    def run(self, key):
        return self._things.get(key)

def handler(event, context, settings=None):
    return Service(Table(boto3.client("dynamodb"), settings.plain_table)).run(event["key"])
"""

TABLE = """
class Table:
    def __init__(self, client, table):
        self._ddb = client
        self._table = table

    def get(self, key):
        return self._ddb.get_item(TableName=self._table, Key=key)
"""


def test_a_method_declared_by_an_extended_protocol_reaches_the_live_classes(
    tmp_path: Path,
) -> None:
    """`get` is ambiguous (dict.get): it counts on a receiver typed by a Protocol that declares
    it, also through a Protocol it extends."""
    for package, text in (("fn", SERVICE), ("ports", PORTS), ("store", TABLE)):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(text)
    index = build_index(tmp_path, ("fn", "ports", "store"), {"plain_table": "PLAIN_TABLE"})
    assert {(c.op, c.cls) for c in reach(index, ["fn"]).calls()} == {("get_item", "Table")}
