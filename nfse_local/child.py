"""`python -m nfse_local.child MODULE [ARGS...]`: run a module as a child of the local stack
that exits when the stack's process is gone.

The local stack starts its worker (and each function) in a session of its own, so Ctrl-C in a
terminal reaches the stack only, which then stops them in order. A stack killed outright (a
test run's timeout, SIGKILL) cannot; without this guard its children would poll a moto server
that no longer exists until someone kills them. The module runs unchanged: the guard is a
thread beside it, outside the product code.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """A daemon thread that ends this process once its parent has gone (it is re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(137)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m nfse_local.child MODULE [ARGS...]")
    module, args = sys.argv[1], sys.argv[2:]
    exit_with_parent()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
