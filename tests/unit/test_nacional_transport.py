"""The SEFIN Nacional client against a loopback HTTPS server that demands a client certificate.

The server answers with the public example answers of tests/fixtures/nacional/client (shaped
as the service's OpenAPI document says, each file naming its source); the NFS-e XML inside
them is nfelib's sample NFSe v1.01, read from the installed package.
"""

from __future__ import annotations

import base64
import gzip
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding

from nfse_core.providers.certificates import Certificate
from nfse_core.providers.deadline import provider_session
from nfse_core.providers.nacional.ids import dps_id
from nfse_core.providers.nacional.transport import (
    DUPLICATE_DPS_CODES,
    NacionalClient,
    encode_dps,
)
from nfse_core.providers.port import (
    FailureKind,
    Issued,
    Rejected,
    RpsKey,
    RpsNotFound,
    TemporaryFailure,
)
from nfse_core.providers.registry import Endpoints, ProviderConfig, ResolvedProvider
from nfse_core.providers.tls import ClientCertificateAdapter, client_tls_context
from nfse_local.certs import (
    generate_key_and_certificate,
    generate_server_certificate,
    mutual_tls_server_context,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nacional" / "client"
CNPJ = "11222333000181"
# The DPS of nfelib's sample NFS-e: municipality 4202404, CNPJ 00000000000000, série 7, nDPS 1.
SAMPLE_RPS = RpsKey(
    cnpj="00000000000000", inscricao_municipal=None, numero=1, serie="7", municipio="4202404"
)
SAMPLE_DPS_ID = "DPS420240420000000000000000007000000000000001"
SAMPLE_CHAVE = "42024042200000000000000000000000000126031234567892"
SPED = "http://www.sped.fazenda.gov.br/nfse"


def sample_nfse() -> bytes:
    return files("nfelib").joinpath("nfse/samples/v1_0/nfse-ibscbs.xml").read_bytes()


def packed(document: bytes) -> str:
    return base64.b64encode(gzip.compress(document)).decode("ascii")


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    if "nfseXmlGZipB64" in answer and answer["nfseXmlGZipB64"] is None:
        answer["nfseXmlGZipB64"] = packed(sample_nfse())
    answer.update(changes)
    return answer


def dps(dps_identifier: str = SAMPLE_DPS_ID) -> bytes:
    """A DPS as the client sees it: bytes whose infDPS carries the Id (the signature and the
    rest do not matter to the transport)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><DPS xmlns="{SPED}" versao="1.01">'
        f'<infDPS Id="{dps_identifier}"><tpAmb>2</tpAmb></infDPS></DPS>'
    ).encode()


# --------------------------------------------------------------------------- the test server


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Send the body in `drip` pieces, `pause` seconds apart (a service holding the line).
    drip: int = 1
    pause: float = 0.0
    delay: float = 0.0


def json_reply(status: int, answer: Any, **options: Any) -> Reply:
    return Reply(
        status, json.dumps(answer).encode(), {"Content-Type": "application/json"}, **options
    )


@dataclass
class Seen:
    method: str
    path: str
    body: bytes
    client_subject: str | None


class FakeSefin:
    """Routes (method, path) to replies; records what it received and who presented which
    certificate."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Reply | Callable[[], Reply]] = {}
        self.seen: list[Seen] = []

    def reply(self, method: str, path: str) -> Reply:
        route = self.routes.get((method, path))
        if route is None:
            return Reply(404, b"<html>not here</html>", {"Content-Type": "text/html"})
        return route() if callable(route) else route


def _handler(fake: FakeSefin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            peer: Any = (
                self.connection.getpeercert()
                if isinstance(self.connection, ssl.SSLSocket)
                else None
            )
            names = [pair for rdn in (peer or {}).get("subject", ()) for pair in rdn]
            subject = next((str(value) for key, value in names if key == "commonName"), None)
            fake.seen.append(Seen(self.command, self.path, body, subject))
            reply = fake.reply(self.command, self.path)
            time.sleep(reply.delay)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.drip <= 1:
                self.wfile.write(reply.body)
                return
            step = max(1, len(reply.body) // reply.drip)
            for start in range(0, len(reply.body), step):
                self.wfile.write(reply.body[start : start + step])
                self.wfile.flush()
                time.sleep(reply.pause)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (the deadline tests) is expected here."""


@dataclass
class Stack:
    fake: FakeSefin
    url: str
    session: requests.Session
    anonymous: requests.Session  # trusts the server, presents no client certificate


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("sefin-tls")
    server_key, server_cert = generate_server_certificate("127.0.0.1")
    client_key, client_cert = generate_key_and_certificate(CNPJ, razao_social="EMPRESA")
    bundle = directory / "server-ca.pem"
    bundle.write_bytes(server_cert.public_bytes(Encoding.PEM))
    context = mutual_tls_server_context(server_key, server_cert, [client_cert], directory)
    return {
        "server": context,
        "bundle": str(bundle),
        "client": Certificate(key=client_key, cert=client_cert),
    }


@pytest.fixture
def stack(tls_material: dict[str, Any]) -> Iterator[Stack]:
    fake = FakeSefin()
    server = QuietServer(("127.0.0.1", 0), _handler(fake))
    server.socket = tls_material["server"].wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    bundle = tls_material["bundle"]
    adapter = ClientCertificateAdapter(
        client_tls_context(tls_material["client"], bundle), max_retries=0
    )
    session = provider_session(adapter, ca_bundle=bundle)
    anonymous = provider_session(ca_bundle=bundle)
    try:
        yield Stack(
            fake, f"https://127.0.0.1:{server.server_address[1]}/SefinNacional", session, anonymous
        )
    finally:
        session.close()
        anonymous.close()
        server.shutdown()
        server.server_close()


def client(stack: Stack, **options: Any) -> NacionalClient:
    options.setdefault("timeout", (2.0, 2.0))
    return NacionalClient(stack.url, session=options.pop("session", stack.session), **options)


NFSE = "/SefinNacional/nfse"
DPS_PATH = f"/SefinNacional/dps/{SAMPLE_DPS_ID}"
NFSE_PATH = f"/SefinNacional/nfse/{SAMPLE_CHAVE}"


# --------------------------------------------------------------------------- emitir


def test_a_201_is_the_nfse_exactly_as_the_service_sent_it(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(201, fixture("post_nfse_201.json"))
    sent = dps()

    issued = client(stack).emitir(sent)

    assert isinstance(issued, Issued)
    assert issued.raw_xml == sample_nfse()
    assert issued.nfse_number == "1"
    assert issued.access_key == SAMPLE_CHAVE
    assert issued.verification_code == SAMPLE_CHAVE
    assert issued.protocol == SAMPLE_DPS_ID
    assert issued.issued_at == datetime(2026, 3, 10, 10, 0, 5, tzinfo=timezone(timedelta(hours=-3)))
    (request,) = stack.fake.seen
    assert request.client_subject == f"EMPRESA:{CNPJ}"  # the company's certificate, mutual TLS
    body = json.loads(request.body)
    assert set(body) == {"dpsXmlGZipB64"}
    assert gzip.decompress(base64.b64decode(body["dpsXmlGZipB64"])) == sent


def test_the_request_body_is_the_same_for_the_same_dps() -> None:
    assert encode_dps(dps()) == encode_dps(dps())


def test_a_refusal_keeps_the_services_codes_and_messages(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(400, fixture("post_nfse_400_rejeicao.json"))

    answer = client(stack).emitir(dps())

    assert isinstance(answer, Rejected)
    assert answer.codes == ("E0310",)
    assert answer.messages[0].mensagem.startswith("O código de tributação nacional informado")
    assert answer.messages[0].correcao is None
    assert answer.duplicate_rps is False


def test_the_documented_camel_case_spelling_is_read_too(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(
        400,
        {
            "tipoAmbiente": 2,
            "erros": [
                {"codigo": "E0004", "descricao": "Conteúdo do identificador", "complemento": "Id"}
            ],
        },
    )

    answer = client(stack).emitir(dps())

    assert isinstance(answer, Rejected)
    assert answer.codes == ("E0004",)
    assert answer.messages[0].correcao == "Id"


def test_a_dps_already_used_is_a_duplicate(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(400, fixture("post_nfse_400_dps_duplicada.json"))

    answer = client(stack).emitir(dps())

    assert {"E0014"} == DUPLICATE_DPS_CODES
    assert isinstance(answer, Rejected)
    assert answer.duplicate_rps is True
    assert answer.codes == ("E0014",)


def test_the_duplicate_codes_come_from_the_caller(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(400, fixture("post_nfse_400_dps_duplicada.json"))

    answer = client(stack, duplicate_dps_codes=frozenset({"E9999"})).emitir(dps())

    assert isinstance(answer, Rejected) and answer.duplicate_rps is False


def test_a_403_with_the_services_messages_is_a_refusal(stack: Stack) -> None:
    answer_403 = {"erros": [{"Codigo": "E9001", "Descricao": "Certificado inválido"}]}
    stack.fake.routes[("POST", NFSE)] = json_reply(403, answer_403)

    answer = client(stack).emitir(dps())

    assert isinstance(answer, Rejected) and answer.codes == ("E9001",)


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(503, b"<html>Service Unavailable</html>", {"Retry-After": "30"}), 503),
        (json_reply(500, fixture("post_nfse_500.json")), 500),
        (json_reply(400, {"title": "Bad Request"}), 400),  # a 400 without the service's erros
        (Reply(404, b"<html>not here</html>"), 404),  # a wrong base URL
        (json_reply(429, {"erros": [{"Codigo": "X", "Descricao": "slow down"}]}), 429),
    ],
    ids=["503", "500-with-erros", "400-without-erros", "404", "429"],
)
def test_an_answer_that_decides_nothing_is_temporary(
    stack: Stack, reply: Reply, status: int
) -> None:
    stack.fake.routes[("POST", NFSE)] = reply

    answer = client(stack).emitir(dps())

    assert isinstance(answer, TemporaryFailure)
    assert answer.kind is FailureKind.HTTP_STATUS
    assert answer.http_status == status


def test_a_503_passes_its_retry_after_on(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = Reply(503, b"", {"Retry-After": "30"})

    answer = client(stack).emitir(dps())

    assert isinstance(answer, TemporaryFailure) and answer.retry_after == 30.0


def test_a_500_keeps_the_services_message_in_its_reason(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(500, fixture("post_nfse_500.json"))

    answer = client(stack).emitir(dps())

    assert isinstance(answer, TemporaryFailure)
    assert "Falha durante o processamento do DPS" in answer.reason


def test_no_answer_within_the_read_timeout_is_a_timeout(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(201, fixture("post_nfse_201.json"), delay=3.0)

    answer = client(stack, timeout=(1.0, 0.5)).emitir(dps())

    assert isinstance(answer, TemporaryFailure) and answer.kind is FailureKind.TIMEOUT


def test_an_answer_dripping_past_the_call_deadline_is_a_timeout(stack: Stack) -> None:
    # Every piece comes within the read timeout; the whole answer would take ~6 s, and the
    # call's deadline (connect + read = 1.5 s) cuts it: a complete 201 never arrives.
    stack.fake.routes[("POST", NFSE)] = json_reply(
        201, fixture("post_nfse_201.json"), drip=30, pause=0.2
    )

    answer = client(stack, timeout=(0.5, 1.0)).emitir(dps())

    assert isinstance(answer, TemporaryFailure) and answer.kind is FailureKind.TIMEOUT


@pytest.mark.parametrize(
    "answer",
    [
        b"not json at all",
        b"[1, 2, 3]",
        json.dumps(fixture("post_nfse_201.json", nfseXmlGZipB64="!!! not base64 !!!")).encode(),
        json.dumps(
            fixture("post_nfse_201.json", nfseXmlGZipB64=base64.b64encode(b"plain").decode())
        ).encode(),
        json.dumps(
            fixture(
                "post_nfse_201.json",
                nfseXmlGZipB64=base64.b64encode(gzip.compress(sample_nfse())[:-20]).decode(),
            )
        ).encode(),
        json.dumps(fixture("post_nfse_201.json", chaveAcesso="123")).encode(),
        json.dumps(fixture("post_nfse_201.json", nfseXmlGZipB64=None)).encode(),
        json.dumps(
            fixture("post_nfse_201.json", nfseXmlGZipB64=packed(b"<NFSe><broken></NFSe>"))
        ).encode(),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "not-base64",
        "not-gzip",
        "truncated-gzip",
        "short-chave",
        "no-document",
        "malformed-xml",
    ],
)
def test_an_unreadable_success_is_temporary(stack: Stack, answer: bytes) -> None:
    stack.fake.routes[("POST", NFSE)] = Reply(201, answer, {"Content-Type": "application/json"})

    result = client(stack).emitir(dps())

    assert isinstance(result, TemporaryFailure)
    assert result.kind is FailureKind.INVALID_ANSWER


def test_a_compressed_document_over_the_limit_is_refused(stack: Stack) -> None:
    bomb = b"<NFSe>" + b" " * 2_000_000 + b"</NFSe>"  # ~2 KB gzipped
    stack.fake.routes[("POST", NFSE)] = json_reply(
        201, fixture("post_nfse_201.json", nfseXmlGZipB64=packed(bomb))
    )

    result = client(stack, max_answer_bytes=100_000).emitir(dps())

    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.INVALID_ANSWER
    assert "too large" in result.reason


def test_an_nfse_with_a_doctype_is_refused(stack: Stack) -> None:
    evil = sample_nfse().replace(
        b'<?xml version="1.0" encoding="utf-8"?>',
        b'<?xml version="1.0" encoding="utf-8"?><!DOCTYPE NFSe [<!ENTITY x "y">]>',
    )
    stack.fake.routes[("POST", NFSE)] = json_reply(
        201, fixture("post_nfse_201.json", nfseXmlGZipB64=packed(evil))
    )

    result = client(stack).emitir(dps())

    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.INVALID_ANSWER


def test_the_nfse_of_another_dps_is_not_taken_for_this_one(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(201, fixture("post_nfse_201.json"))
    other = dps_id("4202404", "00000000000000", "7", 2)

    result = client(stack).emitir(dps(other))

    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.INVALID_ANSWER


def test_no_client_certificate_is_a_connection_failure(stack: Stack) -> None:
    stack.fake.routes[("POST", NFSE)] = json_reply(201, fixture("post_nfse_201.json"))

    result = client(stack, session=stack.anonymous).emitir(dps())

    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.CONNECTION
    assert stack.fake.seen == []  # the handshake failed: nothing reached the service


def test_a_closed_port_is_a_connection_failure() -> None:
    with NacionalClient("https://127.0.0.1:9/SefinNacional", timeout=(1.0, 1.0)) as closed:
        result = closed.emitir(dps())

    assert isinstance(result, TemporaryFailure) and result.kind is FailureKind.CONNECTION


# --------------------------------------------------------------------------- consultar_dps


def test_a_consult_finds_the_nfse_by_the_dps_identifier(stack: Stack) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(200, fixture("get_dps_200.json"))
    stack.fake.routes[("GET", NFSE_PATH)] = json_reply(200, fixture("get_nfse_200.json"))

    found = client(stack).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, Issued)
    assert found.raw_xml == sample_nfse()
    assert found.access_key == SAMPLE_CHAVE
    assert found.nfse_number == "1"
    assert found.protocol == SAMPLE_DPS_ID
    assert [(s.method, s.path) for s in stack.fake.seen] == [
        ("GET", DPS_PATH),
        ("GET", NFSE_PATH),
    ]


def test_the_services_404_is_not_found(stack: Stack) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(404, fixture("get_dps_404.json"))

    found = client(stack).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, RpsNotFound)
    assert found.messages[0].mensagem.startswith("Não foi gerada uma NFS-e")


def test_a_404_with_other_codes_than_the_configured_ones_is_undecided(stack: Stack) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(
        404, {"erro": {"codigo": "E9999", "descricao": "outra coisa"}}
    )

    found = client(stack, dps_not_found_codes=frozenset({"E2404"})).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, TemporaryFailure) and found.kind is FailureKind.INCONCLUSIVE


@pytest.mark.parametrize(
    "reply",
    [
        Reply(404, b"<html>Not Found</html>", {"Content-Type": "text/html"}),
        Reply(404, b""),
        json_reply(404, {"title": "Not Found"}),
    ],
    ids=["html", "empty", "json-without-erro"],
)
def test_a_404_not_in_the_services_words_proves_nothing(stack: Stack, reply: Reply) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = reply

    found = client(stack).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, TemporaryFailure) and found.kind is FailureKind.INCONCLUSIVE


@pytest.mark.parametrize("status", [500, 502, 503, 400, 403])
def test_a_consult_that_fails_is_undecided(stack: Stack, status: int) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(
        status, {"erro": {"codigo": "X", "descricao": "falha"}}
    )

    found = client(stack).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, TemporaryFailure)
    assert found.kind is FailureKind.HTTP_STATUS and found.http_status == status


def test_a_dps_whose_nfse_cannot_be_read_yet_is_undecided(stack: Stack) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(200, fixture("get_dps_200.json"))
    stack.fake.routes[("GET", NFSE_PATH)] = json_reply(
        404, {"erro": {"descricao": "Chave de acesso não encontrada."}}
    )

    found = client(stack).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, TemporaryFailure) and found.kind is FailureKind.INCONCLUSIVE


def test_a_consult_answering_another_chave_is_refused(stack: Stack) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(200, fixture("get_dps_200.json"))
    stack.fake.routes[("GET", NFSE_PATH)] = json_reply(
        200, fixture("get_nfse_200.json", chaveAcesso="9" * 50)
    )

    found = client(stack).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, TemporaryFailure) and found.kind is FailureKind.INVALID_ANSWER


def test_a_slow_consult_is_a_timeout(stack: Stack) -> None:
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(200, fixture("get_dps_200.json"))
    stack.fake.routes[("GET", NFSE_PATH)] = json_reply(
        200, fixture("get_nfse_200.json"), drip=30, pause=0.2
    )

    found = client(stack, timeout=(0.5, 1.0)).consultar_dps(SAMPLE_RPS)

    assert isinstance(found, TemporaryFailure) and found.kind is FailureKind.TIMEOUT


def test_a_consult_needs_the_municipality() -> None:
    with NacionalClient("https://127.0.0.1:9/SefinNacional") as unused, pytest.raises(ValueError):
        unused.consultar_dps(RpsKey(cnpj=CNPJ, inscricao_municipal=None, numero=1, serie="1"))


# --------------------------------------------------------------------------- the plug-in


def nacional_config(url: str, **fields: Any) -> ProviderConfig:
    return ProviderConfig(
        name="SEFIN Nacional (teste)",
        standard="NACIONAL",
        version="1.01",
        endpoints=Endpoints(producao=url, homologacao=url),
        duplicate_rps_codes=frozenset({"E0014"}),
        client_certificate=True,
        **fields,
    )


def test_the_client_of_a_registry_entry(stack: Stack) -> None:
    config = nacional_config(stack.url, timeout={"connect": 1.0, "read": 2.0}, settle_seconds=5)
    provider = ResolvedProvider(
        municipio="4202404", environment="homologacao", endpoint=stack.url, config=config
    )

    built = NacionalClient.for_provider(provider, session=stack.session)

    assert built.base_url == stack.url
    assert built.max_call_seconds == 3.0
    assert built.settle_seconds == 5.0
    assert built.duplicate_dps_codes == {"E0014"}


def test_the_plugin_issues_and_consults_through_the_client(stack: Stack) -> None:
    plugin = pytest.importorskip("nfse_core.providers.nacional_1_01")
    stack.fake.routes[("POST", NFSE)] = json_reply(201, fixture("post_nfse_201.json"))
    stack.fake.routes[("GET", DPS_PATH)] = json_reply(404, fixture("get_dps_404.json"))
    config = nacional_config(stack.url)
    provider = ResolvedProvider(
        municipio="4202404", environment="homologacao", endpoint=stack.url, config=config
    )

    adapter = plugin.connect(provider, stack.session)

    assert adapter.standard == "nacional-1.01"
    assert adapter.ambiente == 2  # produção restrita: the entry resolved for homologacao
    assert isinstance(adapter.issue(dps()), Issued)
    assert isinstance(adapter.consult(SAMPLE_RPS), RpsNotFound)
    assert adapter.max_call_seconds == 35.0  # the registry's default timeouts, 5 + 30


def test_the_signing_profile_is_rsa_sha256_unless_the_entry_names_one() -> None:
    plugin = pytest.importorskip("nfse_core.providers.nacional_1_01")
    url = "https://sefin.producaorestrita.nfse.gov.br/SefinNacional"

    default = plugin.signing_profile(nacional_config(url))
    named = plugin.signing_profile(
        nacional_config(url, signature_algorithm="rsa-sha1", digest_algorithm="sha1")
    )

    assert (default.signature_algorithm, default.digest_algorithm) == ("rsa-sha256", "sha256")
    assert (named.signature_algorithm, named.digest_algorithm) == ("rsa-sha1", "sha1")
