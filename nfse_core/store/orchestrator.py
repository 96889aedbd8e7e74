"""Hands an accepted invoice to the emission state machine."""

from __future__ import annotations

import json
from typing import Any


class StepFunctionsOrchestrator:
    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._sfn = client
        self._arn = state_machine_arn

    def start(self, invoice_id: str, payload: dict[str, Any], *, name: str) -> str:
        """Start one execution for the invoice; `name` (the invoice id, or a fresh suffix of it
        when an unfinished emit is resumed) makes it findable in the execution history."""
        answer = self._sfn.start_execution(
            stateMachineArn=self._arn, name=name, input=json.dumps(payload)
        )
        arn: str = answer["executionArn"]
        return arn
