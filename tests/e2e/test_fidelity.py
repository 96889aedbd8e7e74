"""The local stack is no kinder than AWS: what differs is exactly nfse_local/fidelity.py's list,
and the running components use the template's waits, timeouts and counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfse_local.cfn import load_template
from nfse_local.fidelity import DEVIATIONS, WORKER, differences, expand, markdown_table
from nfse_local.stack import LocalStack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_what_differs_from_the_template_is_exactly_the_documented_list(
    local_stack: LocalStack,
) -> None:
    components = (WORKER, *local_stack.functions)
    assert differences(local_stack) == expand(DEVIATIONS, components)


def test_the_queues_are_the_templates(local_stack: LocalStack) -> None:
    template = load_template(ROOT / "template.yaml")
    sqs = local_stack.client("sqs")
    requests_queue = sqs.get_queue_attributes(
        QueueUrl=local_stack.resources.requests_queue_url, AttributeNames=["All"]
    )["Attributes"]
    props = template["Resources"]["RequestsQueue"]["Properties"]
    assert int(requests_queue["VisibilityTimeout"]) == props["VisibilityTimeout"]
    assert int(requests_queue["MessageRetentionPeriod"]) == props["MessageRetentionPeriod"]
    max_receive = template["Parameters"]["MaxReceiveCount"]["Default"]
    assert f'"maxReceiveCount": {max_receive}' in requests_queue["RedrivePolicy"]


def test_the_worker_runs_the_production_waits(local_stack: LocalStack) -> None:
    env = local_stack.worker_env
    assert env["WORKER_WAIT_SECONDS"] == "20"
    assert env["VISIBILITY_TIMEOUT"] == "120"
    assert "WORKER_BACKOFF_BASE_SECONDS" not in env  # the setting's default: 5 s
    assert "WORKER_ATTEMPTS_PER_DELIVERY" not in env


def test_each_function_runs_with_its_own_timeout_and_role(local_stack: LocalStack) -> None:
    template = load_template(ROOT / "template.yaml")
    default_timeout = template["Globals"]["Function"]["Timeout"]
    keys = set()
    for name, process in local_stack.functions.items():
        props = template["Resources"][name]["Properties"]
        assert process.timeout == props.get("Timeout", default_timeout)
        keys.add(process.env["AWS_ACCESS_KEY_ID"])
    keys.add(local_stack.worker_env["AWS_ACCESS_KEY_ID"])
    assert len(keys) == len(local_stack.functions) + 1  # one principal each


def test_docs_list_the_deviations() -> None:
    docs = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert markdown_table() in docs, "regenerate: python -m nfse_local.fidelity"
