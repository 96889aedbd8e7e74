"""NacionalSimulator: the SEFIN Nacional on loopback, its lifecycle and its control from Python."""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from nfse_local.certs import (
    generate_key_and_certificate,
    generate_server_certificate,
    mutual_tls_server_context,
)
from nfse_local.simulator_nacional.faults import Forced, NacionalFaults
from nfse_local.simulator_nacional.http_server import (
    BASE_PATH,
    NacionalHttpServer,
    NacionalRequestHandler,
)
from nfse_local.simulator_nacional.service import NacionalService
from nfse_local.simulator_nacional.state import NacionalState, StoredNfse

log = logging.getLogger(__name__)

# The CNPJ the simulator's own NFS-e signing certificate names (a made-up one, valid digits).
_SEFIN_CNPJ = "11222333000181"


class NacionalSimulator:
    """The simulated SEFIN Nacional; a context manager serving on a free loopback port.

    HTTPS with mutual TLS: `tls` is a server context to use as is; otherwise, when
    `trusted_clients` are given, the simulator makes its own server certificate (`.server_cert`,
    `.ca_bundle` a PEM file for the client) and requires a client certificate among them. With
    neither it serves plain HTTP (for tests of the API alone; the transport's tests should not).
    `admin_port` (optional) serves /_admin/* alone over plain HTTP on loopback, for callers that
    hold no trusted client certificate.
    """

    def __init__(  # noqa: PLR0913 - keyword-only: the simulator's switches
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
        trusted_clients: Sequence[x509.Certificate] = (),
        faults: NacionalFaults | None = None,
        tipo_ambiente: int = 2,
        verify_signatures: bool = True,
        require_cert_cnpj_match: bool = True,
        reject_prefixes: bool = True,
        success_id_dps: Literal["nfse", "dps"] = "nfse",
        admin_port: int | None = None,
    ) -> None:
        if tipo_ambiente not in (1, 2):
            raise ValueError("tipo_ambiente is 1 (produção) or 2 (homologação)")
        self.host = host
        self.port = port
        self.admin_port = admin_port
        self._workdir = tempfile.TemporaryDirectory(prefix="sefin-sim-")
        self.server_cert: x509.Certificate | None = None
        self.ca_bundle: Path | None = None
        if tls is None and trusted_clients:
            key, cert = generate_server_certificate(host)
            tls = mutual_tls_server_context(
                key, cert, list(trusted_clients), Path(self._workdir.name)
            )
            self.server_cert = cert
            self.ca_bundle = Path(self._workdir.name) / "sefin-ca.pem"
            self.ca_bundle.write_bytes(cert.public_bytes(Encoding.PEM))
        self.tls = tls
        self.state = NacionalState(faults or NacionalFaults())
        self._stop = threading.Event()
        signing_key, signing_cert = generate_key_and_certificate(
            _SEFIN_CNPJ, razao_social="SEFIN NACIONAL SIMULADA"
        )
        self.signing_cert = signing_cert
        self.service = NacionalService(
            self.state,
            self._stop,
            tipo_ambiente=tipo_ambiente,
            verify_signatures=verify_signatures,
            require_cert_cnpj_match=require_cert_cnpj_match,
            reject_prefixes=reject_prefixes,
            success_id_dps=success_id_dps,
            signing_key_pem=signing_key.private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            ),
            signing_cert_pem=signing_cert.public_bytes(Encoding.PEM),
        )
        self._servers: list[tuple[NacionalHttpServer, threading.Thread]] = []
        # The ADN parametrização's answer per municipality: adheres to the national emitter.
        self.convenios: dict[str, bool] = {"3106200": True}

    # -- lifecycle

    def _serve(self, port: int, *, admin_only: bool, tls: ssl.SSLContext | None) -> int:
        server = NacionalHttpServer((self.host, port), NacionalRequestHandler)
        if tls is not None:
            # The handshake runs in accept(): a client without an accepted certificate is
            # refused there and never reaches a handler.
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        server.simulator = self
        server.admin_only = admin_only
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        thread.start()
        self._servers.append((server, thread))
        return int(server.server_address[1])

    def start(self) -> NacionalSimulator:
        if self._servers:
            return self
        self._stop.clear()
        self.port = self._serve(self.port, admin_only=False, tls=self.tls)
        if self.admin_port is not None:
            self.admin_port = self._serve(self.admin_port, admin_only=True, tls=None)
        log.info("sefin nacional simulator listening", extra={"url": self.base_url})
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers waiting in a timeout fault
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self._servers.clear()

    def close(self) -> None:
        """Stop, and remove the temporary files (the server's PEM files)."""
        self.stop()
        self._workdir.cleanup()

    def __enter__(self) -> NacionalSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API's base URL, ending in /SefinNacional (the registry's endpoint)."""
        return self.root_url + BASE_PATH

    @property
    def admin_url(self) -> str | None:
        return None if self.admin_port is None else f"http://{self.host}:{self.admin_port}"

    @property
    def parametrizacao_url(self) -> str:
        """The ADN parametrização API's base (served by this simulator too)."""
        return self.root_url + "/parametrizacao"

    def convenio_answer(self, municipio: str) -> tuple[int, dict[str, Any]]:
        """GET /parametrizacao/{municipio}/convenio, in the service's shapes: 200 with the
        agreement's flags (1 = yes), or 404 with parametrosConvenio null and the reason."""
        active = self.convenios.get(municipio)
        if active is None:
            return 404, {
                "parametrosConvenio": None,
                "mensagem": f"O convênio do município {municipio} ainda não está ativo.",
            }
        flag = 1 if active else 0
        return 200, {
            "parametrosConvenio": {
                "aderenteAmbienteNacional": 1,
                "aderenteEmissorNacional": flag,
                "situacaoEmissaoPadraoContribuintesRFB": flag,
                "aderenteMAN": 0,
                "permiteAproveitametoDeCreditos": True,
            },
            "mensagem": "Parâmetros do convênio recuperados com sucesso.",
        }

    # -- control from Python

    @property
    def faults(self) -> NacionalFaults:
        return self.state.faults

    def set_faults(self, **changes: Any) -> NacionalFaults:
        faults = self.state.faults.updated(changes)
        self.state.set_faults(faults)
        return faults

    def force(self, n_dps: int, outcome: Forced | str | None) -> None:
        """Script the outcome of every POST for nDPS `n_dps` (None clears it)."""
        forced = dict(self.state.faults.forced)
        if outcome is None:
            forced.pop(n_dps, None)
        else:
            forced[n_dps] = Forced(outcome)
        self.state.set_faults(replace(self.state.faults, forced=forced))

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset(self) -> None:
        """Forget every NFS-e and counter; the fault settings stay."""
        self.state.reset()

    def issued(self, id_dps: str) -> StoredNfse | None:
        """What the SEFIN really holds for the DPS, whatever its consults show (lag)."""
        return self.state.by_dps(id_dps)
