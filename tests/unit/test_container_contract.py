"""The worker image (adapters_service/Dockerfile) against the task that runs it (template.yaml's
WorkerTaskDefinition): every path the worker writes is writable there.

Static, on purpose: the task's conditions (read-only root filesystem, the image's user, Fargate's
bind mounts) are facts of the two files, so reading them checks exactly what AWS will run, on
every machine, with no Docker engine (none runs on CI). tests/integration/
test_worker_writable_paths.py runs the real worker under those conditions, to find the paths
this list of rules does not know about.

Fargate creates a bind mount root-owned with mode 0755 unless the image declares a VOLUME at the
mount's containerPath; then the volume starts as that directory of the image, owner and mode
included (Amazon ECS Developer Guide, "Use bind mounts with Amazon ECS"). So each mount must be
an image VOLUME, made and chown'd to the image's user before the VOLUME line (a build step
after VOLUME does not reach the volume), and everything the worker writes must lie under one.
The defect this stops: the task mounted /tmp, the image declared no VOLUME, the user 10001 could
not write its heartbeat, the task exited and the stack rolled back.
"""

from __future__ import annotations

import io
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "adapters_service" / "Dockerfile"
TEMPLATE = ROOT / "template.yaml"
# What the worker writes, by the environment variable that places it: the heartbeat file and
# the temporary files (tempfile: nfse_core/providers/tls.py's client key). Python's bytecode is
# not written at all (PYTHONDONTWRITEBYTECODE); nothing else is (the integration test finds out).
WRITTEN_PATHS = ("WORKER_HEARTBEAT_FILE", "TMPDIR")


@dataclass
class Image:
    """The final stage of a Dockerfile, as far as writable paths go."""

    env: dict[str, str]
    volumes: list[str]
    user: str | None
    # Directories the build creates and chowns before the first VOLUME line: path -> owner uid.
    owned: dict[str, str] = field(default_factory=dict)
    made: set[str] = field(default_factory=set)


def _volume_paths(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        paths: list[str] = json.loads(value)
        return paths
    return value.split()


def _shell_commands(script: str) -> list[list[str]]:
    """A RUN line's commands (split at &&, ; and ||), each as its words."""
    commands: list[list[str]] = [[]]
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    for word in lexer:
        if word in {"&&", ";", "||", "|"}:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def parse_image(text: str) -> Image:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    stages: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(instruction)
    image = Image(env=dict(parser.envs), volumes=[], user=None)
    for instruction in stages[-1]:
        name, value = instruction["instruction"], instruction["value"]
        if name == "VOLUME":
            image.volumes.extend(_volume_paths(value))
        elif name == "USER":
            image.user = value.split(":")[0].strip()
        elif name == "RUN" and not image.volumes:
            for command in _shell_commands(value):
                if command[0] == "mkdir":
                    image.made.update(w for w in command[1:] if not w.startswith("-"))
                elif command[0] == "chown":
                    owner, *paths = [w for w in command[1:] if not w.startswith("-")]
                    for path in paths:
                        image.owned[path] = owner.split(":")[0]
    return image


@dataclass
class Task:
    """The worker container of WorkerTaskDefinition."""

    read_only_root: bool
    mounts: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    env: dict[str, Any]


def parse_task(template: dict[str, Any]) -> Task:
    properties = template["Resources"]["WorkerTaskDefinition"]["Properties"]
    (container,) = properties["ContainerDefinitions"]
    return Task(
        read_only_root=container.get("ReadonlyRootFilesystem") is True,
        mounts=list(container.get("MountPoints") or []),
        volumes=list(properties.get("Volumes") or []),
        env={item["Name"]: item["Value"] for item in container.get("Environment") or []},
    )


def _inside(path: str, roots: list[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(root) for root in roots)


def contract_problems(image: Image, task: Task) -> list[str]:
    """Every way the task would fail to write what the worker writes (empty: none)."""
    problems: list[str] = []
    if not task.read_only_root:
        problems.append("the task must keep ReadonlyRootFilesystem: true")
    if image.user is None or image.user in {"0", "root"} or not image.user.isdigit():
        problems.append(f"the image's USER must be a non-root numeric uid, not {image.user!r}")
    if image.env.get("PYTHONDONTWRITEBYTECODE") != "1":
        problems.append("the image must set PYTHONDONTWRITEBYTECODE=1 (its root is read-only)")
    bind_mounts = {v["Name"] for v in task.volumes if not set(v) - {"Name"}}
    writable: list[str] = []
    for mount in task.mounts:
        path = mount["ContainerPath"]
        if mount.get("ReadOnly") is True:
            continue
        writable.append(path)
        if mount["SourceVolume"] not in bind_mounts:
            problems.append(f"{path}: its volume {mount['SourceVolume']} is not a task bind mount")
        if path not in image.volumes:
            problems.append(f"{path}: mounted but not a VOLUME of the image (root-owned 0755)")
        if path not in image.made:
            problems.append(f"{path}: not created (mkdir) before the VOLUME line")
        if image.owned.get(path) != image.user:
            problems.append(
                f"{path}: chown'd to {image.owned.get(path)!r} before the VOLUME line, not to the"
                f" image's USER {image.user!r}"
            )
    for name in WRITTEN_PATHS:
        for where, value in (("image ENV", image.env.get(name)), ("task env", task.env.get(name))):
            if value is None and where == "task env":
                continue  # the image's value holds
            if value is None or not _inside(value, writable):
                problems.append(f"{name} ({where}) = {value!r} is outside the mounted {writable}")
        task_value, image_value = task.env.get(name), image.env.get(name)
        if task_value is not None and task_value != image_value:
            problems.append(f"{name}: the task says {task_value!r}, the image {image_value!r}")
    return problems


def test_the_worker_can_write_everything_it_writes_under_the_task() -> None:
    image = parse_image(DOCKERFILE.read_text(encoding="utf-8"))
    task = parse_task(load_template(TEMPLATE))
    assert contract_problems(image, task) == []
    assert task.mounts, "the worker needs a writable volume (heartbeat, TMPDIR)"


# The worker image and task as they were when the stack could not be created (issue 11): the
# checker has to refuse them, or the test above proves nothing.
OLD_DOCKERFILE = """\
FROM public.ecr.aws/docker/library/python:3.12-slim AS build
RUN pip install --prefix=/install .
FROM public.ecr.aws/docker/library/python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 WORKER_HEARTBEAT_FILE=/tmp/worker.heartbeat
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home worker
USER 10001
ENTRYPOINT ["python", "-m", "adapters_service"]
"""
OLD_TASK = Task(
    read_only_root=True,
    mounts=[{"SourceVolume": "tmp", "ContainerPath": "/tmp", "ReadOnly": False}],
    volumes=[{"Name": "tmp"}],
    env={"WORKER_HEARTBEAT_FILE": "/tmp/worker.heartbeat"},
)


def test_the_old_image_and_task_are_refused() -> None:
    problems = contract_problems(parse_image(OLD_DOCKERFILE), OLD_TASK)
    assert "/tmp: mounted but not a VOLUME of the image (root-owned 0755)" in problems
    assert any(p.startswith("/tmp: chown'd to None") for p in problems)
    assert any(p.startswith("TMPDIR (image ENV) = None") for p in problems)


def test_a_volume_chowned_after_its_volume_line_is_refused() -> None:
    """Build steps after VOLUME do not reach the volume: the chown must come first."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    image = parse_image(text)
    (path,) = image.volumes
    late = text.replace(f'VOLUME ["{path}"]\n', "").replace(
        "RUN useradd", f'VOLUME ["{path}"]\nRUN useradd', 1
    )
    problems = contract_problems(parse_image(late), parse_task(load_template(TEMPLATE)))
    assert any("not created (mkdir) before the VOLUME line" in p for p in problems), problems
    assert any("chown'd to None before the VOLUME line" in p for p in problems), problems


@pytest.mark.parametrize(
    ("name", "value"),
    [("TMPDIR", "/tmp"), ("WORKER_HEARTBEAT_FILE", "/var/worker.heartbeat")],
)
def test_a_written_path_outside_the_volume_is_refused(name: str, value: str) -> None:
    image = parse_image(DOCKERFILE.read_text(encoding="utf-8"))
    task = parse_task(load_template(TEMPLATE))
    task.env[name] = value
    assert any(p.startswith(f"{name} (task env)") for p in contract_problems(image, task))


def test_a_root_user_or_a_writable_root_is_refused() -> None:
    image = parse_image(DOCKERFILE.read_text(encoding="utf-8"))
    task = parse_task(load_template(TEMPLATE))
    image.user, task.read_only_root = "root", False
    problems = contract_problems(image, task)
    assert "the task must keep ReadonlyRootFilesystem: true" in problems
    assert any(p.startswith("the image's USER must be a non-root") for p in problems)
