"""Hostile provider answers over real HTTP: the ABRASF client refuses them, fast, reading nothing.

A tiny HTTP server on 127.0.0.1 plays the municipality's web service and answers with XXE,
external DTDs, entity expansion ("billion laughs") and oversized documents: in the SOAP
envelope itself, in the escaped `outputXML` text, in a CDATA `outputXML`, and inline. Every
call must return the port's refusal for an unreadable answer (TemporaryFailure with kind
INVALID_ANSWER: nothing definitive is known, the issuance service consults later), within a
second or two, without the content of a local file in anything it returns, without opening
a named pipe the answer points at (an open would block), and without fetching anything from
the network (a second local server counts requests).
"""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nfse_core.providers.abrasf import AbrasfSoapClient
from nfse_core.providers.port import FailureKind, Rejected, RpsKey, TemporaryFailure
from nfse_core.xml.schema import NFSE_NS

pytestmark = pytest.mark.integration

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_NS = "http://nfse.abrasf.org.br"
MARKER = "SECRET-MARKER-7f3a9c"
QUICK_SECONDS = 2.0
RPS = RpsKey(cnpj="11222333000181", inscricao_municipal="12345678", numero=7, serie="1")


# ------------------------------------------------------------------------- servers ---


@dataclass
class Canned:
    """What the fake provider answers; `stream_forever` sends chunks until the client leaves."""

    body: bytes = b""
    status: int = 200
    stream_forever: bool = False
    requests: list[str] = field(default_factory=list)


def _serve(canned: Canned) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer()

        def do_GET(self) -> None:
            self._answer()

        def _answer(self) -> None:
            canned.requests.append(f"{self.command} {self.path}")
            self.send_response(canned.status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            if canned.stream_forever:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"<a>" + b"x" * 65536 + b"</a>"
                frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                try:
                    while True:
                        self.wfile.write(frame)
                except OSError:  # the client stopped reading: what we want
                    return
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            self.wfile.write(canned.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def servers() -> Iterator[tuple[Canned, str, Canned, str]]:
    """(provider answer, provider URL, bait server, bait URL): the bait must never be asked."""
    started: list[ThreadingHTTPServer] = []
    out: list[Any] = []
    for _ in range(2):
        canned = Canned()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _serve(canned))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        started.append(server)
        out += [canned, f"http://127.0.0.1:{server.server_address[1]}"]
    yield out[0], out[1] + "/nfse", out[2], out[3]
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(f"{MARKER}\n")
    return path


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe: opening it for reading blocks until a writer comes, so a parser that
    resolved an entity pointing at it would hang the call."""
    path = tmp_path / "pipe"
    os.mkfifo(path)
    yield path
    # Unblock a reader if there ever was one, so a failing test does not hang the run.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(descriptor)


# ------------------------------------------------------------------------- documents ---


def envelope(inner: str, *, prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
        f'<ns:GerarNfseResponse xmlns:ns="{WSDL_NS}">{inner}</ns:GerarNfseResponse>'
        "</soap:Body></soap:Envelope>"
    ).encode()


def escaped_output(document: str) -> bytes:
    """The common ABRASF form: the answer document as escaped text in outputXML."""
    return envelope(f"<outputXML>{html.escape(document, quote=False)}</outputXML>")


def cdata_output(document: str) -> bytes:
    return envelope(f"<outputXML><![CDATA[{document}]]></outputXML>")


def answer_document(text: str = "ok") -> str:
    return (
        f'<GerarNfseResposta xmlns="{NFSE_NS}"><ListaMensagemRetorno><MensagemRetorno>'
        f"<Codigo>E1</Codigo><Mensagem>{text}</Mensagem></MensagemRetorno>"
        "</ListaMensagemRetorno></GerarNfseResposta>"
    )


def xxe_doctype(system_id: str) -> str:
    return f'<!DOCTYPE x [<!ENTITY ent SYSTEM "{system_id}">]>'


def lol_doctype(levels: int = 9) -> str:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, levels + 1)
    ]
    return f"<!DOCTYPE x [{''.join(entities)}]>"


def xxe_answer_document(system_id: str) -> str:
    return xxe_doctype(system_id) + answer_document("&ent;")


# ------------------------------------------------------------------------- the calls ---


def call_quickly(client: AbrasfSoapClient, operation: str) -> tuple[Any, float]:
    """Run one client call in a thread: a call blocked on a named pipe must not hang the run."""
    result: list[Any] = []
    calls: dict[str, Callable[[], Any]] = {
        "gerar_nfse": lambda: client.gerar_nfse(b"<GerarNfseEnvio/>"),
        "consultar_nfse_por_rps": lambda: client.consultar_nfse_por_rps(RPS),
    }
    started = time.monotonic()
    worker = threading.Thread(target=lambda: result.append(calls[operation]()), daemon=True)
    worker.start()
    worker.join(timeout=10)
    elapsed = time.monotonic() - started
    assert not worker.is_alive(), "the call is blocked (on a file or a pipe the answer named?)"
    return result[0], elapsed


def assert_refused(outcome: Any, elapsed: float, reason_part: str) -> TemporaryFailure:
    assert isinstance(outcome, TemporaryFailure), outcome
    assert outcome.kind is FailureKind.INVALID_ANSWER, outcome
    assert reason_part in outcome.reason, outcome.reason
    assert MARKER not in repr(outcome)
    assert "lollollol" not in outcome.reason
    assert elapsed < QUICK_SECONDS, f"{elapsed:.2f}s"
    return outcome


def _client(url: str, **kwargs: Any) -> AbrasfSoapClient:
    return AbrasfSoapClient(url, timeout=(2.0, 5.0), **kwargs)


# ------------------------------------------------------------------------- envelope ---

OPERATIONS = ["gerar_nfse", "consultar_nfse_por_rps"]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("target", ["file", "fifo", "http"])
def test_xxe_in_the_envelope_is_refused(
    servers: tuple[Canned, str, Canned, str],
    secret_file: Path,
    fifo: Path,
    target: str,
    operation: str,
) -> None:
    provider, url, bait, bait_url = servers
    system_id = {
        "file": secret_file.as_uri(),
        "fifo": fifo.as_uri(),
        "http": f"{bait_url}/evil.xml",
    }[target]
    provider.body = envelope("<outputXML>&ent;</outputXML>", prolog=xxe_doctype(system_id))
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, operation)
    assert_refused(outcome, elapsed, "doctype")
    assert bait.requests == []
    assert len(provider.requests) == 1


def test_external_dtd_in_the_envelope_is_not_fetched(
    servers: tuple[Canned, str, Canned, str],
) -> None:
    provider, url, bait, bait_url = servers
    provider.body = envelope(
        "<outputXML>x</outputXML>", prolog=f'<!DOCTYPE x SYSTEM "{bait_url}/evil.dtd">'
    )
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, "gerar_nfse")
    assert_refused(outcome, elapsed, "doctype")
    assert bait.requests == []


@pytest.mark.parametrize("operation", OPERATIONS)
def test_billion_laughs_in_the_envelope_is_refused(
    servers: tuple[Canned, str, Canned, str], operation: str
) -> None:
    provider, url, _, _ = servers
    provider.body = envelope("<outputXML>&lol9;</outputXML>", prolog=lol_doctype())
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, operation)
    assert_refused(outcome, elapsed, "doctype")


def test_oversized_envelope_is_refused_at_the_limit(
    servers: tuple[Canned, str, Canned, str],
) -> None:
    provider, url, _, _ = servers
    provider.body = escaped_output(answer_document("x" * 300_000))
    with _client(url, max_answer_bytes=100_000) as client:
        outcome, elapsed = call_quickly(client, "gerar_nfse")
    assert_refused(outcome, elapsed, "larger than the limit")


def test_oversized_envelope_at_the_default_limit_is_refused(
    servers: tuple[Canned, str, Canned, str],
) -> None:
    provider, url, _, _ = servers
    provider.body = escaped_output(answer_document("x" * 6_000_000))  # default limit: 5 MB
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, "gerar_nfse")
    assert_refused(outcome, elapsed, "larger than the limit")


def test_endless_answer_is_cut_at_the_limit(servers: tuple[Canned, str, Canned, str]) -> None:
    provider, url, _, _ = servers
    provider.stream_forever = True  # chunked, no Content-Length, never ends
    with _client(url, max_answer_bytes=1_000_000) as client:
        outcome, elapsed = call_quickly(client, "consultar_nfse_por_rps")
    assert_refused(outcome, elapsed, "larger than the limit")


# ------------------------------------------------------------------ the inner payload ---

WRAPPERS: dict[str, Callable[[str], bytes]] = {"escaped": escaped_output, "cdata": cdata_output}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize("target", ["file", "fifo", "http"])
def test_xxe_in_the_inner_output_xml_is_refused(
    servers: tuple[Canned, str, Canned, str],
    secret_file: Path,
    fifo: Path,
    target: str,
    wrapper: str,
    operation: str,
) -> None:
    provider, url, bait, bait_url = servers
    system_id = {
        "file": secret_file.as_uri(),
        "fifo": fifo.as_uri(),
        "http": f"{bait_url}/evil.xml",
    }[target]
    provider.body = WRAPPERS[wrapper](xxe_answer_document(system_id))
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, operation)
    failure = assert_refused(outcome, elapsed, "unreadable outputXML")
    assert "doctype" in failure.reason
    assert bait.requests == []


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_external_dtd_in_the_inner_output_xml_is_not_fetched(
    servers: tuple[Canned, str, Canned, str], wrapper: str
) -> None:
    provider, url, bait, bait_url = servers
    document = f'<!DOCTYPE x SYSTEM "{bait_url}/evil.dtd">' + answer_document()
    provider.body = WRAPPERS[wrapper](document)
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, "gerar_nfse")
    assert_refused(outcome, elapsed, "doctype")
    assert bait.requests == []


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_billion_laughs_in_the_inner_output_xml_is_refused(
    servers: tuple[Canned, str, Canned, str], wrapper: str, operation: str
) -> None:
    provider, url, _, _ = servers
    provider.body = WRAPPERS[wrapper](lol_doctype() + answer_document("&lol9;"))
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, operation)
    assert_refused(outcome, elapsed, "doctype")


def test_oversized_inner_output_xml_is_refused(servers: tuple[Canned, str, Canned, str]) -> None:
    # The escaped text is longer than the document it carries, so the envelope limit is met
    # first; either way the answer is refused before any tree is built.
    provider, url, _, _ = servers
    provider.body = escaped_output(answer_document("<b>" * 40_000))
    with _client(url, max_answer_bytes=100_000) as client:
        outcome, elapsed = call_quickly(client, "gerar_nfse")
    assert_refused(outcome, elapsed, "larger than the limit")


def test_entity_reference_in_an_inline_answer_is_refused(
    servers: tuple[Canned, str, Canned, str],
) -> None:
    # An inline document cannot carry a DOCTYPE; an entity reference without one is not XML.
    provider, url, _, _ = servers
    provider.body = envelope(f"<outputXML>{answer_document('&ent;')}</outputXML>")
    with _client(url) as client:
        outcome, elapsed = call_quickly(client, "gerar_nfse")
    assert_refused(outcome, elapsed, "malformed")


# ------------------------------------------------------------------------- control ---


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_the_same_answer_without_the_attack_is_read(
    servers: tuple[Canned, str, Canned, str], wrapper: str
) -> None:
    """The refusals above come from the attacks, not from the way the answers are wrapped."""
    provider, url, _, _ = servers
    provider.body = WRAPPERS[wrapper](answer_document("Inscrição inválida"))
    with _client(url) as client:
        outcome = client.gerar_nfse(b"<GerarNfseEnvio/>")
    assert isinstance(outcome, Rejected), outcome
    assert outcome.codes == ("E1",)
    assert outcome.messages[0].mensagem == "Inscrição inválida"
