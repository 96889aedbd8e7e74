"""The worker's writable directories, proven writable before the loop starts.

The task's root filesystem is read-only and the image runs as an unprivileged user: the heartbeat
file and tempfile's directory (the client certificate's key for mutual TLS) must lie in the
volume the task mounts (adapters_service/Dockerfile, VOLUME /scratch). When they do not, the
worker says so in one line and exits with EXIT_NOT_WRITABLE, instead of a PermissionError
traceback at the first heartbeat.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

EXIT_NOT_WRITABLE = 73  # sysexits.h EX_CANTCREAT: cannot create a (user) output file


def writable_dirs(heartbeat_file: str | None, environ: Mapping[str, str]) -> list[Path]:
    """The directories the worker writes in: the heartbeat file's, and TMPDIR (tempfile falls
    back silently to /tmp when TMPDIR cannot be written, which a read-only root refuses later,
    at a TLS handshake: so TMPDIR itself is checked)."""
    dirs: list[Path] = []
    if heartbeat_file:
        dirs.append(Path(heartbeat_file).parent)
    if environ.get("TMPDIR"):
        dirs.append(Path(environ["TMPDIR"]))
    return list(dict.fromkeys(dirs))


def write_problem(directory: Path) -> str | None:
    """Why a file cannot be created in `directory` (None when one can): tried, not guessed from
    mode bits, so a read-only mount or a missing directory counts too."""
    try:
        fd, name = tempfile.mkstemp(prefix=".write-check-", dir=directory)
    except OSError as error:
        return f"{directory}: {error.strerror or error}"
    os.close(fd)
    os.unlink(name)
    return None


def not_writable(dirs: list[Path]) -> list[str]:
    """One problem per directory that cannot be written (empty when all can)."""
    return [problem for problem in map(write_problem, dirs) if problem is not None]
