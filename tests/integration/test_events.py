"""Every sample event in events/ runs through its handler (the invoke command) as its
.expected.json says: the `sam local invoke` check that needs no Docker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nfse_local.invoke import Invoker, main

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted(p for p in (ROOT / "events").glob("*/*.json") if ".expected" not in p.name)


def contains(actual: Any, expected: Any) -> bool:
    """expected is a subset of actual (lists: element-wise, in order, by prefix)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) >= len(expected)
            and all(any(contains(a, e) for a in actual) for e in expected)
        )
    return bool(actual == expected)


def test_every_event_has_an_expectation() -> None:
    assert EVENTS, "no sample events"
    for event in EVENTS:
        assert (
            event.with_suffix(".expected.json").exists()
            or (event.parent / (event.stem + ".expected.json")).exists()
        ), event


@pytest.mark.parametrize("event_path", EVENTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_event_gives_expected_response(event_path: Path, invoker: Invoker) -> None:
    expected = json.loads((event_path.parent / f"{event_path.stem}.expected.json").read_text())
    required = [invoker.invoke_file(ROOT / r) for r in expected.get("requires", [])]
    response = invoker.invoke_file(event_path)
    assert response["statusCode"] == expected["statusCode"], response
    body = json.loads(response["body"])
    assert contains(body, expected["body"]), body
    for name in expected.get("headers", []):
        assert name in response["multiValueHeaders"], response
    if expected.get("sameInvoiceAsRequired"):
        assert body["invoiceId"] == json.loads(required[-1]["body"])["invoiceId"]
    if response["statusCode"] >= 400:
        error = body["error"]
        assert set(error) == {"code", "message", "details"}
        assert all(set(d) == {"field", "message"} for d in error["details"])


def test_invoke_command_runs_a_sequence(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(ROOT / "events/emit/valid.json"), str(ROOT / "events/get/existing.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert '"statusCode": 201' in out and '"statusCode": 200' in out
