"""The README's run command works as written: the demo reaches every expected final state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]
ROOT = Path(__file__).resolve().parents[2]


def test_demo_exits_zero_and_reports_every_invoice(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nfse_local.demo", "--state-dir", str(tmp_path / "demo")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "demo OK" in out
    assert out.count("ISSUED    ISSUED") == 11 and out.count("FAILED    FAILED") == 2
    assert "ProcessorFn summary" in out  # one invoice went through the DLQ and the reprocessor
    documents = list((tmp_path / "demo" / "documents").glob("*/nfse.xml"))
    assert len(documents) == 11
