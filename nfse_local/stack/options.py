"""What a LocalStack is told: where it lives, what it starts, how the template is deployed."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from nfse_local.samples import TENANTS, SampleTenant

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# moto accepts any credentials; these keep boto3 from looking for real ones.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class StackError(RuntimeError):
    """The local stack could not start (a component failed, or is missing)."""


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class StackOptions:
    """Where the stack lives and what it serves.

    `state_dir` defaults to `<root>/.local`, `session_file` to `<state_dir>/session.json`.
    `simulator`: True (required), False (not started) or None (started when its module
    exists). `database_url` defaults to $DATABASE_URL, else SQLite in `state_dir`. `api_key`
    is the first sample tenant's (random when None).
    """

    root: Path = ROOT
    state_dir: Path | None = None
    session_file: Path | None = None
    write_session: bool = True
    simulator: bool | None = None
    database_url: str | None = None
    api_key: str | None = None
    tenants: tuple[SampleTenant, ...] = TENANTS
    region: str = REGION
    prefix: str = "nfse"
    gateway_port: int = 0


@dataclass(frozen=True)
class WorkerOptions:
    """The adapter worker tasks: `start` as StackOptions.simulator; `count` tasks at once (the
    service's desired count, each its own process); `log` None lets them write to this
    process's stdout/stderr; `env_overrides` go over their environment."""

    start: bool | None = None
    count: int = 1
    log: Path | None = None
    # Above the worker's 20 s long poll plus a message in flight (ECS's StopTimeout: 110).
    grace_seconds: float = 40.0
    env_overrides: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_overrides", _frozen(self.env_overrides))


@dataclass(frozen=True)
class DeploymentOptions:
    """How the template is deployed here: its parameters (e.g. {"MaxReceiveCount": "10"}) and
    extra environment per function process (the chaos run's fault injection)."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    function_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _frozen(self.parameters))
        function_env = {name: _frozen(env) for name, env in self.function_env.items()}
        object.__setattr__(self, "function_env", MappingProxyType(function_env))


def module_available(name: str, root: Path = ROOT) -> bool:
    """Whether `python -m name` would find the module, run from `root` (the repository)."""
    relative = Path(*name.split("."))
    if (root / relative.with_suffix(".py")).is_file() or (
        root / relative / "__init__.py"
    ).is_file():
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
