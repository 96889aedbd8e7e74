"""Container health check: the consumer loop touched its heartbeat file recently.

The loop beats before every long poll (at most 20 s apart); a stuck loop fails the task and ECS
replaces it. Used by the task definition's HealthCheck and the Dockerfile's HEALTHCHECK.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# The image and the task set WORKER_HEARTBEAT_FILE (in the /scratch volume); this is the
# settings default (nfse_core/config.py), for a worker run as a local process.
DEFAULT_HEARTBEAT_FILE = "/tmp/worker.heartbeat"  # noqa: S108
MAX_SILENCE_SECONDS = 120.0


def healthy(heartbeat: Path, now: float, max_silence: float = MAX_SILENCE_SECONDS) -> bool:
    try:
        last = heartbeat.stat().st_mtime
    except OSError:
        return False
    return now - last <= max_silence


def main() -> int:
    path = Path(os.environ.get("WORKER_HEARTBEAT_FILE", DEFAULT_HEARTBEAT_FILE))
    return 0 if healthy(path, time.time()) else 1


if __name__ == "__main__":
    sys.exit(main())
