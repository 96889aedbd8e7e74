"""The provider simulator: a server on loopback, and its control from Python."""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import replace
from typing import Any

from nfse_local.simulator.dialect_service import DialectService
from nfse_local.simulator.dialects import FAMILIES, family_of_path
from nfse_local.simulator.faults import FaultConfig, Forced
from nfse_local.simulator.http_server import SimulatorHttpServer, SimulatorRequestHandler
from nfse_local.simulator.operations import AbrasfService
from nfse_local.simulator.soap import Reply
from nfse_local.simulator.state import SimulatorState, StoredNfse

log = logging.getLogger(__name__)


class ProviderSimulator:
    """The simulator server; a context manager that serves on a free loopback port by default."""

    def __init__(  # noqa: PLR0913 - keyword-only: the simulator's switches
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: FaultConfig | None = None,
        verify_signatures: bool = True,
        require_cert_cnpj_match: bool = True,
        path: str = "/nfse",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: serve HTTPS with this server-side context; with `verify_mode` CERT_REQUIRED
        it is a provider that authenticates each connection with the client's certificate."""
        self.host = host
        self.port = port
        self.path = path
        self.tls = tls
        self.state = SimulatorState(faults or FaultConfig())
        self._stop = threading.Event()
        self.service = AbrasfService(
            self.state,
            self._stop,
            verify_signatures=verify_signatures,
            require_cert_cnpj_match=require_cert_cnpj_match,
        )
        self.dialects = DialectService(self.service)
        self._server: SimulatorHttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> ProviderSimulator:
        if self._server is not None:
            return self
        self._stop.clear()
        server = SimulatorHttpServer((self.host, self.port), SimulatorRequestHandler)
        if self.tls is not None:
            # The handshake runs in accept(); a client without an accepted certificate is
            # refused there and never reaches a handler.
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.simulator = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        log.info("provider simulator listening", extra={"url": self.url})
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping in a timeout fault or a drip
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ProviderSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken early because the simulator stops."""
        return self._stop.wait(seconds)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The SOAP endpoint (what PROVIDER_ENDPOINT_OVERRIDE points at)."""
        return self.base_url + self.path

    # -- control from Python

    @property
    def faults(self) -> FaultConfig:
        return self.state.faults

    def set_faults(self, **changes: Any) -> FaultConfig:
        faults = self.state.faults.updated(changes)
        self.state.set_faults(faults)
        return faults

    def force(self, numero: int, outcome: Forced | str | None) -> None:
        """Script the outcome of every request for RPS `numero` (None clears it)."""
        forced = dict(self.state.faults.forced)
        if outcome is None:
            forced.pop(numero, None)
        else:
            forced[numero] = Forced(outcome)
        self.state.set_faults(replace(self.state.faults, forced=forced))

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset(self) -> None:
        """Forget every NFS-e and counter; the fault settings stay."""
        self.state.reset()

    def issued(self, cnpj: str, numero: int, serie: str = "1", tipo: int = 1) -> StoredNfse | None:
        """What the provider really holds for the RPS, whatever its consult shows (lag)."""
        return self.state.find((cnpj, numero, serie, tipo))

    @property
    def verify_signatures(self) -> bool:
        return self.service.verify_signatures

    @verify_signatures.setter
    def verify_signatures(self, value: bool) -> None:
        self.service.verify_signatures = value

    @property
    def require_cert_cnpj_match(self) -> bool:
        return self.service.require_cert_cnpj_match

    @require_cert_cnpj_match.setter
    def require_cert_cnpj_match(self, value: bool) -> None:
        self.service.require_cert_cnpj_match = value

    # -- SOAP

    def handle_soap(
        self, body: bytes, path: str | None = None, soap_action: str | None = None
    ) -> Reply:
        """The answer to one SOAP request; raises Drop when the connection is to be cut.

        A `path` whose first segment names a family (dialects.FAMILIES) is answered in that
        family's dialect; any other path by the lenient plain ABRASF 2.04 service."""
        dialect = family_of_path(path) if path else None
        if dialect is not None:
            return self.dialects.handle(body, dialect, soap_action)
        return self.service.handle(body)

    def family_url(self, family: str, real_path: str = "") -> str:
        """The local URL of `family` with the provider's real path appended, as the client's
        local mode rebases a municipality's URL: base_url + /<family> + <real path>."""
        dialect = FAMILIES[family]
        return self.base_url + dialect.prefix + real_path

    @staticmethod
    def families() -> dict[str, str]:
        """Each family the simulator speaks and its local path prefix."""
        return {name: dialect.prefix for name, dialect in FAMILIES.items()}
