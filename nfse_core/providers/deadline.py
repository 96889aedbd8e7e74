"""One absolute wall-clock deadline per provider call, enforced on the connection itself.

A requests/urllib3 timeout bounds each socket operation, not the call: a provider that drips
one byte every 0.8 s keeps a (connect 1 s, read 1 s) client busy for as long as it likes. The
send lease (docs/architecture.md) relies on a send being over by a known moment, so each call
runs inside a `CallDeadline`: the sockets its connections open or reuse are registered, and
when the deadline passes a timer thread shuts them down. The blocked read (or write, or TLS
exchange) then fails at once, and the caller reports a timeout.

`DeadlineAdapter` is the requests adapter whose connections register themselves; every
session that talks to a provider mounts it (nfse_core.providers.clients, the SOAP client's own
default session, and the mutual-TLS adapter, which extends it).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from nfse_core.providers.port import FailureKind, TemporaryFailure

_current = threading.local()


class CallDeadline:
    """`with CallDeadline(seconds):` — sockets used by this thread's calls inside the block are
    shut down when `seconds` have passed; `expired` says whether that happened."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("a call deadline must be positive")
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> CallDeadline:
        if getattr(_current, "deadline", None) is not None:
            raise RuntimeError("provider calls do not nest")
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        _current.deadline = None

    def register(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # shutdown (not close): the fd stays owned by its connection object, which sees EOF or an
    # error on its next read or write and is then discarded by the pool.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _register(sock: socket.socket | None) -> None:
    deadline: CallDeadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.register(sock)


class _DeadlineHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)  # covers a TLS handshake that follows on this socket
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)  # a connection reused from the pool
        super().request(*args, **kwargs)


class _DeadlineHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        _register(self.sock)  # the TLS socket that replaced the plain one

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)
        super().request(*args, **kwargs)


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter whose connections obey the calling thread's `CallDeadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPPool,
            "https": _DeadlineHTTPSPool,
        }


def provider_session(
    adapter: DeadlineAdapter | None = None, *, ca_bundle: str = ""
) -> requests.Session:
    """A requests Session for provider calls: every connection through `adapter` (one with no
    transport retries by default: a POST that reached the provider is never re-sent blindly),
    verified against `ca_bundle` when given (else certifi's roots)."""
    session = requests.Session()
    mounted = adapter if adapter is not None else DeadlineAdapter(max_retries=0)
    session.mount("http://", mounted)
    session.mount("https://", mounted)
    if ca_bundle:
        session.verify = ca_bundle
    return session


def retry_after_of(response: requests.Response) -> float | None:
    """The seconds a provider's Retry-After asks for (never negative), or None."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class ProviderConnection:
    """What every provider client holds: its timeouts (connect, read: one deadline for a whole
    call, `max_call_seconds`), the settle time of its provider, the answer size limit, and the
    session it was given or owns (closed with it)."""

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session | None,
        timeout: tuple[float, float],
        settle_seconds: float,
        max_answer_bytes: int,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        connect, read = timeout
        if connect <= 0 or read <= 0:
            raise ValueError("timeouts must be positive")
        if settle_seconds < 0:
            raise ValueError("settle_seconds must not be negative")
        self.url = url
        self.timeout = (float(connect), float(read))
        self._settle_seconds = float(settle_seconds)
        self.max_answer_bytes = max_answer_bytes
        self._owns_session = session is None
        self._session = session or provider_session()

    @property
    def max_call_seconds(self) -> float:
        """The longest one call can take: connect + read, one wall-clock deadline for every
        exchange of the call (connection, request, every byte of the answer)."""
        return self.timeout[0] + self.timeout[1]

    @property
    def settle_seconds(self) -> float:
        return self._settle_seconds

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def failed(  # noqa: PLR0913 - the failure's fields, for its log line and result
        self,
        operation: str,
        started: float,
        kind: FailureKind,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> TemporaryFailure:
        """A call that decided nothing: logged (by the client's module) and returned."""
        logging.getLogger(type(self).__module__).warning(
            "provider call failed",
            extra={
                "operation": operation,
                "endpoint": self.url,
                "kind": kind.value,
                "reason": reason,
                "http_status": status,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return TemporaryFailure(reason, kind, retry_after=retry_after, http_status=status)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
