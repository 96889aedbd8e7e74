"""Things that start and stop: the context-manager protocol written once."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """A mixin: `with thing:` starts it and stops it; subclasses define `start` and `stop`."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
