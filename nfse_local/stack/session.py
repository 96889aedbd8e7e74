"""The session file (.local/session.json): what a running stack tells scripts and tools."""

from __future__ import annotations

import contextlib
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from nfse_local.stack.options import StackError


class SessionFile:
    """The stack's session file: written owner-only, removed at the end if still the stack's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._text = ""

    @property
    def written(self) -> bool:
        return bool(self._text)

    def refuse_if_running(self, state_dir: Path) -> None:
        """Two stacks on one state dir would wipe each other's ledger and session file."""
        try:
            api_url = json.loads(self.path.read_text())["apiUrl"]
            requests.get(api_url, timeout=0.5)
        except (OSError, ValueError, KeyError, TypeError, requests.RequestException):
            return  # no session file, or a stale one: nobody is serving it
        raise StackError(
            f"a local stack is already running from {state_dir} ({api_url}); stop it,"
            " or give this one another state dir"
        )

    def write(self, data: dict[str, Any], exit_stack: ExitStack) -> None:
        """Write `data`; the first write also arranges its removal when `exit_stack` closes."""
        text = json.dumps(data, indent=2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        # It holds an API key, passwords and tokens (local ones, but still): owner only.
        temporary.touch(mode=0o600)
        temporary.chmod(0o600)
        temporary.write_text(text)
        temporary.replace(self.path)
        first = not self._text
        self._text = text
        if first:
            exit_stack.callback(self.remove)

    def remove(self) -> None:
        # A stale session file would point `invoke --session` at dead ports; one another
        # stack wrote since is not ours to remove.
        with contextlib.suppress(OSError):
            if self.path.read_text() == self._text:
                self.path.unlink()
        self._text = ""
