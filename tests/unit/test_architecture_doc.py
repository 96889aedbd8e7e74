"""docs/architecture.md explains the repository from inside it: its code-layout table names every
directory git tracks at the top level and every Python package, each path it names exists, and
it sends no reader outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE_ROOTS = ("nfse_core", "functions", "adapters_service", "nfse_local", "bench")


def layout_paths() -> set[str]:
    text = DOC.read_text(encoding="utf-8")
    section = re.search(r"^## Code layout\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "docs/architecture.md has no '## Code layout' section"
    return {p.rstrip("/") for p in re.findall(r"^\| `([^`]+)` \|", section.group(1), re.M)}


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in listed.splitlines() if (ROOT / line).exists()]


def test_every_top_level_directory_is_in_the_table() -> None:
    directories = {f.split("/", 1)[0] for f in tracked_files() if "/" in f}
    assert directories - layout_paths() == set()


def test_every_python_package_is_in_the_table() -> None:
    packages = {
        str(init.parent.relative_to(ROOT))
        for root in PACKAGE_ROOTS
        for init in (ROOT / root).rglob("__init__.py")
    }
    assert packages, "no packages found"
    assert packages - layout_paths() == set()


def test_every_path_in_the_table_exists() -> None:
    assert {p for p in layout_paths() if not (ROOT / p).exists()} == set()


def test_it_sends_no_reader_outside_the_repository() -> None:
    assert "../" not in DOC.read_text(encoding="utf-8")


def readme_emit_steps() -> list[tuple[str, str]]:
    """(file, name) pairs of the README's 'Follow one emit request' table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^Follow one emit request.*?\n\n(.*?)\n\n", text, re.S | re.M)
    assert section, "README.md has no 'Follow one emit request' table"
    pairs: list[tuple[str, str]] = []
    for row in section.group(1).splitlines()[2:]:
        module_cell = row.rsplit("|", 2)[1]
        for path, names in re.findall(r"`([\w/.]+\.(?:py|json))`(?: \(([^)]*)\))?", module_cell):
            found = re.findall(r"`([\w.]+)`", names) or [""]
            pairs.extend((path, name) for name in found)
    return pairs


def test_the_readme_emit_walk_names_modules_and_names_that_exist() -> None:
    steps = readme_emit_steps()
    assert len({path for path, _ in steps}) >= 12
    for path, name in steps:
        source = ROOT / path
        assert source.is_file(), f"README names {path}, which does not exist"
        for part in filter(None, name.split(".")):
            assert re.search(rf"^\s*(?:def|class) {part}\b", source.read_text(), re.M), (
                f"README names {name} in {path}, which defines no {part}"
            )
