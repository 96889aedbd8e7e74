"""nfse_local.outputs: what a command needs from a stack's outputs, and the message if not."""

from __future__ import annotations

import pytest

from nfse_local.outputs import missing_outputs_problem

pytestmark = pytest.mark.unit


def test_outputs_that_hold_every_name_have_no_problem() -> None:
    assert (
        missing_outputs_problem(
            {"ApiId": "a", "ApiStage": "v1", "Extra": "x"}, ("ApiId", "ApiStage")
        )
        is None
    )


def test_missing_and_empty_outputs_are_named_in_order() -> None:
    problem = missing_outputs_problem({"ApiId": "", "Other": "x"}, ("ApiId", "ApiStage"))
    assert problem == ("the stack has no ApiId, ApiStage output: deploy the current template.yaml")
