"""The README's Deploying walk-through names only things that exist: every make target, every
`python -m nfse_local` command and option, and every template parameter; and it answers every
question `sam deploy --guided` asks (one per template parameter, plus SAM's own)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from nfse_local import __main__ as cli
from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The questions `sam deploy --guided` asks besides the template's parameters (aws-sam-cli
# samcli/commands/deploy/guided_context.py prompts).
SAM_QUESTIONS = (
    "Stack Name",
    "AWS Region",
    "Confirm changes before deploy",
    "Allow SAM CLI IAM role creation",
    "Disable rollback",
    "Save arguments to configuration file",
    "SAM configuration file",
    "SAM configuration environment",
)


def deploying_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Deploying\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Deploying' section"
    return match.group(1)


def code_lines(section: str) -> list[str]:
    """Shell lines of the section's code blocks, continuation lines joined, comments cut."""
    lines: list[str] = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", section, re.S):
        joined = block.replace("\\\n", " ")
        for raw in joined.splitlines():
            line = raw.split(" # ")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, re.M))


def template_parameters(path: Path) -> set[str]:
    return set(load_template(path).get("Parameters", {}))


def test_every_make_target_it_names_exists() -> None:
    section = deploying_section()
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", section))
    named |= {line.split()[1] for line in code_lines(section) if line.startswith("make ")}
    assert named, "the walk-through names no make target"
    assert named <= make_targets(), f"missing make targets: {named - make_targets()}"


def _help_of(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0, f"{' '.join(argv)} is not a command"
    return out.getvalue()


def test_every_nfse_local_command_and_option_it_uses_exists() -> None:
    commands = [
        line.split("-m nfse_local", 1)[1]
        for line in code_lines(deploying_section())
        if "-m nfse_local" in line
    ]
    assert commands, "the walk-through runs no nfse_local command"
    for command in commands:
        words = shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", command))
        path = [w for w in words[:2] if not w.startswith("-")]
        if path and path[0] != "admin":
            path = path[:1]
        help_text = _help_of(path)
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in help_text, f"`{command.strip()}`: {option} is not an option"


def test_it_answers_every_guided_question() -> None:
    section = deploying_section()
    answered = set(re.findall(r"^\|\s*`?([A-Za-z][A-Za-z0-9 '/-]*?)`?\s*\|", section, re.M))
    parameters = template_parameters(ROOT / "template.yaml")
    assert parameters - answered == set(), "parameters the guided deploy asks, unanswered"
    assert set(SAM_QUESTIONS) - answered == set(), "SAM questions unanswered"
    named_parameters = answered - set(SAM_QUESTIONS) - {"Question", "Parameter"}
    assert named_parameters <= parameters, f"not parameters: {named_parameters - parameters}"


def test_the_parameters_it_overrides_and_samconfig_sets_exist() -> None:
    parameters = template_parameters(ROOT / "template.yaml")
    section = deploying_section()
    for line in code_lines(section):
        if "--parameter-overrides" in line and "nfse-edge" not in line:
            overrides = line.split("--parameter-overrides", 1)[1]
            for name in re.findall(r"([A-Z][A-Za-z0-9]+)=", overrides):
                assert name in parameters, f"{line}: {name} is not a parameter"
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    for env, settings in config.items():
        if not isinstance(settings, dict):
            continue
        deploy = settings.get("deploy", {}).get("parameters", {})
        for name in re.findall(r"([A-Z][A-Za-z0-9]+)=", deploy.get("parameter_overrides", "")):
            assert name in parameters, f"samconfig [{env}] sets {name}, not a parameter"


def test_sa_east_1_is_the_documented_and_configured_region() -> None:
    assert "sa-east-1" in deploying_section()
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    for env in ("default", "prod"):
        assert config[env]["global"]["parameters"]["region"] == "sa-east-1", env
