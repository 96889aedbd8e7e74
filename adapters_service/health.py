"""Container health check: the consumer loop beat recently (a stuck loop fails the task)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

MAX_SILENCE_SECONDS = 90.0  # a long poll is 20 s; three missed polls and more is not healthy


def healthy(heartbeat: Path, now: float, max_silence: float = MAX_SILENCE_SECONDS) -> bool:
    try:
        last = float(heartbeat.read_text().strip())
    except (OSError, ValueError):
        return False
    return now - last <= max_silence


def main() -> int:
    path = Path(os.environ.get("HEARTBEAT_FILE", "/tmp/nfse-worker.heartbeat"))  # noqa: S108
    return 0 if healthy(path, time.time()) else 1


if __name__ == "__main__":
    sys.exit(main())
