"""The CloudFront Function that gives the regional rate limit its key, run for real.

EdgeViewerIpFunction's code is read from template.yaml (CloudFormation takes it inline) and run
with Node.js against CloudFront viewer-request events, in the shape CloudFront hands them to a
cloudfront-js-2.0 function: header names lower case, each header `{value}` plus `multiValue`
when the viewer sent it more than once. The point: whatever the client sends, `x-viewer-ip`
reaching the API is the address CloudFront saw, so a client cannot spread its requests over
invented addresses (as it could with X-Forwarded-For) nor pin them on someone else's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
VIEWER = "203.0.113.7"
# Runs the function's code as CloudFront would: `handler(event)` once, its return value out.
HARNESS = """
const event = JSON.parse(require('fs').readFileSync(0, 'utf8'));
%s
Promise.resolve(handler(event)).then((out) => process.stdout.write(JSON.stringify(out)));
"""


@cache
def function_resource() -> dict[str, Any]:
    resource: dict[str, Any] = load_template(ROOT / "template.yaml")["Resources"][
        "EdgeViewerIpFunction"
    ]
    return resource


def run_function(event: dict[str, Any]) -> Any:
    if NODE is None:
        pytest.fail("Node.js is needed to run the CloudFront Function (apt-get install nodejs)")
    code = function_resource()["Properties"]["FunctionCode"]
    assert isinstance(code, str), "FunctionCode must be a literal string, not an intrinsic"
    done = subprocess.run(
        [NODE, "-e", HARNESS % code],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def viewer_request(headers: dict[str, Any], ip: str = VIEWER) -> dict[str, Any]:
    return {
        "version": "1.0",
        "context": {"eventType": "viewer-request", "distributionId": "EDFDVBD6EXAMPLE"},
        "viewer": {"ip": ip},
        "request": {
            "method": "POST",
            "uri": "/invoices",
            "querystring": {},
            "headers": headers,
            "cookies": {},
        },
    }


API_HEADERS = {
    "host": {"value": "d111111abcdef8.cloudfront.net"},
    "authorization": {"value": "Bearer eyJ.token.sig"},
    "x-api-key": {"value": "tenant-key"},
    "idempotency-key": {"value": "order-42"},
    "content-type": {"value": "application/json"},
    "x-forwarded-for": {"value": "198.51.100.1, 198.51.100.2"},
}


def test_the_viewer_address_is_added_and_the_request_goes_on_unchanged() -> None:
    out = run_function(viewer_request(dict(API_HEADERS)))
    assert out["headers"]["x-viewer-ip"] == {"value": VIEWER}
    # A request (not a response) comes back: CloudFront forwards it to the API.
    assert out["method"] == "POST" and out["uri"] == "/invoices"
    assert "statusCode" not in out
    for name, value in API_HEADERS.items():
        assert out["headers"][name] == value, name


def test_a_forged_viewer_address_is_overwritten() -> None:
    headers = dict(API_HEADERS) | {"x-viewer-ip": {"value": "192.0.2.99"}}
    out = run_function(viewer_request(headers))
    assert out["headers"]["x-viewer-ip"] == {"value": VIEWER}


def test_every_value_of_a_repeated_forged_header_is_dropped() -> None:
    forged = {
        "value": "192.0.2.1",
        "multiValue": [{"value": "192.0.2.1"}, {"value": "192.0.2.2"}],
    }
    out = run_function(viewer_request(dict(API_HEADERS) | {"x-viewer-ip": forged}))
    assert out["headers"]["x-viewer-ip"] == {"value": VIEWER}


def test_two_clients_behind_forged_headers_are_told_apart_by_their_addresses() -> None:
    """Two viewers claiming the same address still get their own keys (and budgets)."""
    same_claim = dict(API_HEADERS) | {"x-viewer-ip": {"value": "192.0.2.50"}}
    first = run_function(viewer_request(dict(same_claim), ip="198.51.100.10"))
    second = run_function(viewer_request(dict(same_claim), ip="2001:db8::1"))
    assert first["headers"]["x-viewer-ip"] == {"value": "198.51.100.10"}
    assert second["headers"]["x-viewer-ip"] == {"value": "2001:db8::1"}


def test_the_function_is_a_published_viewer_request_function_of_the_distribution() -> None:
    template = load_template(ROOT / "template.yaml")
    resource = function_resource()
    assert resource["Type"] == "AWS::CloudFront::Function"
    assert resource["Condition"] == "EdgeEnabled"
    props = resource["Properties"]
    assert props["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    assert props["AutoPublish"] is True  # the distribution runs the LIVE stage
    behavior = template["Resources"]["EdgeDistribution"]["Properties"]["DistributionConfig"][
        "DefaultCacheBehavior"
    ]
    assert behavior["FunctionAssociations"] == [
        {
            "EventType": "viewer-request",
            "FunctionARN": {"Fn::GetAtt": ["EdgeViewerIpFunction", "FunctionARN"]},
        }
    ]
    # Managed-AllViewerExceptHostHeader forwards every viewer header but Host, the one the
    # function adds included; a header allow-list policy would have to name x-viewer-ip.
    assert behavior["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac"
