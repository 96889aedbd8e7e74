"""The SEFIN Nacional NFS-e API (REST, JSON, mutual TLS): answers as the port's values.

The contract, from the service's own OpenAPI document ("API NFS-e - Sefin Nacional", v1,
https://sefin.producaorestrita.nfse.gov.br/SefinNacional/docs/index.html, as kept in
github.com/edusouza/nfse-emissor-go docs/api/sefin-nacional-swagger.json, commit 3337e99) and the
Manual dos Contribuintes (API do Emissor Público Nacional, v1.0, 17/03/2025):

- `POST {base}/nfse` with `{"dpsXmlGZipB64": base64(gzip(signed DPS))}`: 201 with `idDps`,
  `chaveAcesso`, `nfseXmlGZipB64`, `dataHoraProcessamento`, `alertas`; 400 (business rules),
  403 (the connection's certificate) and 500 (processing failure) with `erros`, a list of
  {codigo, descricao, complemento}. The document names them in camelCase; answers seen from the
  service spell them `Codigo`/`Descricao` (and the error answer's `idDPS`), so every JSON field
  is read without regard to case.
- `GET {base}/dps/{idDps}`: 200 with `chaveAcesso`; 404 "Não foi gerada uma NFS-e com o
  identificador de DPS informado" with the service's error answer (`erro`, one message).
- `GET {base}/nfse/{chaveAcesso}`: 200 with `nfseXmlGZipB64`; 404 for an unknown chave.
- Duplicate DPS: rule E0014 of ANEXO I (RN DPS_NFS-e, row 69, v1.00 of 2025-12-26): "Conjunto de
  Série, Número, Código do Município Emissor e CNPJ/CPF informado nesta DPS já existe em uma NFS-e
  gerada a partir de uma DPS enviada anteriormente."

Nothing here raises for a service problem, every call has one absolute deadline
(nfse_core.providers.deadline), and POSTs are never retried here: issuing is not idempotent.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import requests

from nfse_core.domain.rules import FISCAL_TZ
from nfse_core.providers.deadline import CallDeadline, ProviderConnection, retry_after_of
from nfse_core.providers.nacional.ids import dps_id, is_chave_acesso
from nfse_core.providers.port import (
    ConsultaResult,
    FailureKind,
    GerarNfseResult,
    Issued,
    ProviderMessage,
    Rejected,
    RpsKey,
    RpsNotFound,
    TemporaryFailure,
)
from nfse_core.xml.safe import UnsafeXml, parse_untrusted

if TYPE_CHECKING:
    from nfse_core.providers.registry import ResolvedProvider

log = logging.getLogger(__name__)

# The namespace of the DPS and NFS-e documents (leiaute v1.01).
SPED_NFSE_NS: Final = "http://www.sped.fazenda.gov.br/nfse"
# ANEXO I, RN DPS_NFS-e: E0014, the DPS (série, número, município emissor, CNPJ/CPF) already
# produced an NFS-e. The caller then consults by the DPS identifier.
DUPLICATE_DPS_CODES: Final = frozenset({"E0014"})
# Refusals of the document (or of the connection's certificate) that carry the service's
# `erros`: 400 (business rules) and 403 (certificate) in the OpenAPI document; 422 for safety.
# Anything else that is not 2xx is undecided, whatever its body says.
REJECTION_STATUSES: Final = frozenset({400, 403, 422})
DEFAULT_MAX_ANSWER_BYTES: Final = 5_000_000
_JSON_HEADERS: Final = {"Accept": "application/json", "Content-Type": "application/json"}

T = TypeVar("T")


class _Problem(Exception):
    """Why an answer is not a definitive one; becomes a TemporaryFailure."""

    def __init__(
        self,
        kind: FailureKind,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    retry_after: float | None


# --------------------------------------------------------------------------- encoding


def encode_dps(signed_dps: bytes) -> bytes:
    """The POST /nfse body: the signed DPS gzipped (no timestamp: same DPS, same bytes) and
    base64-encoded in `dpsXmlGZipB64`."""
    packed = base64.b64encode(gzip.compress(signed_dps, mtime=0)).decode("ascii")
    return json.dumps({"dpsXmlGZipB64": packed}).encode("utf-8")


def gunzip_b64(value: object, *, max_bytes: int) -> bytes:
    """The document inside a `...XmlGZipB64` field, at most `max_bytes` once decompressed."""
    if not isinstance(value, str) or not value:
        raise _Problem(FailureKind.INVALID_ANSWER, "no compressed document in the answer")
    try:
        packed = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Problem(FailureKind.INVALID_ANSWER, "the document is not valid base64") from exc
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
    try:
        document = inflater.decompress(packed, max_bytes + 1)
    except zlib.error as exc:
        raise _Problem(FailureKind.INVALID_ANSWER, f"the document is not gzip: {exc}") from exc
    if len(document) > max_bytes or inflater.unconsumed_tail:
        raise _Problem(FailureKind.INVALID_ANSWER, "the decompressed document is too large")
    if not inflater.eof or inflater.unused_data:
        raise _Problem(FailureKind.INVALID_ANSWER, "the gzip stream is truncated or has extra data")
    return document


# --------------------------------------------------------------------------- reading answers


def _json_object(body: bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Problem(FailureKind.INVALID_ANSWER, "the answer is not JSON") from exc
    if not isinstance(value, dict):
        raise _Problem(FailureKind.INVALID_ANSWER, "the answer is not a JSON object")
    return value


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """obj[name], the name matched without regard to case (the service and its documentation
    disagree on it)."""
    if name in obj:
        return obj[name]
    wanted = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None


def service_messages(answer: Mapping[str, Any]) -> tuple[ProviderMessage, ...]:
    """The messages of an error answer: `erros` (a list, POST) or `erro` (one, the consults)."""
    items: list[Any] = []
    erros = _field(answer, "erros")
    if isinstance(erros, list):
        items.extend(erros)
    erro = _field(answer, "erro")
    if isinstance(erro, dict):
        items.append(erro)
    messages = []
    for item in items:
        if not isinstance(item, dict):
            continue
        codigo = _text(_field(item, "codigo")) or ""
        descricao = _text(_field(item, "descricao")) or ""
        if codigo or descricao:
            messages.append(
                ProviderMessage(codigo.upper(), descricao, _text(_field(item, "complemento")))
            )
    return tuple(messages)


def _parse_moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=FISCAL_TZ)


def _ns(path: str) -> str:
    return "/".join(f"{{{SPED_NFSE_NS}}}{step}" for step in path.split("/"))


def issued_from_nfse(
    answer: Mapping[str, Any],
    *,
    expected_dps_id: str | None,
    max_bytes: int,
) -> Issued:
    """Issued from a success answer (POST 201 or GET /nfse 200): the NFS-e XML kept exactly as
    the service sent it, checked to be the NFS-e of `expected_dps_id` when it is known."""
    chave = _text(_field(answer, "chaveAcesso"))
    if chave is None or not is_chave_acesso(chave):
        raise _Problem(FailureKind.INVALID_ANSWER, "the answer has no 50-digit chaveAcesso")
    answered_id = _text(_field(answer, "idDps"))
    # The service's POST answer has been seen carrying "NFS" + the chave in idDps (SefinNacional
    # 1.5.0 and 1.6.0 answers quoted by integrators) where its OpenAPI document names the DPS
    # Id: both are this invoice's; anything else is another DPS's answer.
    if answered_id == f"NFS{chave}":
        answered_id = None
    if expected_dps_id is not None and answered_id is not None and answered_id != expected_dps_id:
        raise _Problem(
            FailureKind.INVALID_ANSWER, f"the answer is for DPS {answered_id}, not this one"
        )
    raw = gunzip_b64(_field(answer, "nfseXmlGZipB64"), max_bytes=max_bytes)
    try:
        root = parse_untrusted(raw, max_bytes=max_bytes)
    except UnsafeXml as exc:
        raise _Problem(FailureKind.INVALID_ANSWER, f"unreadable NFS-e XML: {exc}") from exc
    if root.tag != f"{{{SPED_NFSE_NS}}}NFSe":
        raise _Problem(FailureKind.INVALID_ANSWER, f"the document is not an NFSe: {root.tag}")
    inf = root.find(_ns("infNFSe"))
    if inf is None:
        raise _Problem(FailureKind.INVALID_ANSWER, "NFSe without infNFSe")
    # infNFSe@Id is "NFS" + the chave de acesso (leiaute NFS-e v1.01, TSIdNFSe).
    if inf.get("Id") not in (None, f"NFS{chave}"):
        raise _Problem(FailureKind.INVALID_ANSWER, "the NFS-e's Id does not match its chave")
    embedded = inf.find(_ns("DPS/infDPS"))
    embedded_id = embedded.get("Id") if embedded is not None else None
    dps_known = expected_dps_id or answered_id
    if dps_known is not None and embedded_id is not None and embedded_id != dps_known:
        raise _Problem(
            FailureKind.INVALID_ANSWER, f"the NFS-e carries DPS {embedded_id}, not {dps_known}"
        )
    numero = _text(inf.findtext(_ns("nNFSe")))
    if numero is None:
        raise _Problem(FailureKind.INVALID_ANSWER, "NFSe without nNFSe")
    issued_at = _parse_moment(_text(inf.findtext(_ns("dhProc")))) or _parse_moment(
        _text(_field(answer, "dataHoraProcessamento"))
    )
    if issued_at is None:
        raise _Problem(FailureKind.INVALID_ANSWER, "NFSe without a readable dhProc")
    return Issued(
        nfse_number=numero,
        verification_code=chave,
        protocol=answered_id or embedded_id or expected_dps_id,
        issued_at=issued_at,
        raw_xml=raw,
        access_key=chave,
    )


def dps_id_of(signed_dps: bytes) -> str | None:
    """infDPS@Id of a DPS we built (None when it cannot be read: the service will say why)."""
    try:
        root = parse_untrusted(signed_dps, max_bytes=max(len(signed_dps), 1))
    except UnsafeXml:
        return None
    inf = root.find(_ns("infDPS"))
    return inf.get("Id") if inf is not None else None


def _summary(messages: tuple[ProviderMessage, ...]) -> str:
    return "; ".join(str(m) for m in messages)


# --------------------------------------------------------------------------- the client


class NacionalClient(ProviderConnection):
    """SEFIN Nacional for every municipality that adheres to it (the Provider port's calls)."""

    def __init__(  # noqa: PLR0913 - keyword-only: the registry entry's settings
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        duplicate_dps_codes: frozenset[str] = DUPLICATE_DPS_CODES,
        dps_not_found_codes: frozenset[str] | None = None,
        settle_seconds: float = 60.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        """`dps_not_found_codes`: when given, a 404 of the DPS consult counts as "not found"
        only if every code it carries is one of these; by default any 404 in the service's own
        error format does (the OpenAPI document gives it no code)."""
        super().__init__(
            base_url.rstrip("/"),
            session=session,
            timeout=timeout,
            settle_seconds=settle_seconds,
            max_answer_bytes=max_answer_bytes,
        )
        self.base_url = base_url.rstrip("/")
        self.duplicate_dps_codes = frozenset(c.upper() for c in duplicate_dps_codes)
        self.dps_not_found_codes = (
            None if dps_not_found_codes is None else frozenset(dps_not_found_codes)
        )

    @classmethod
    def for_provider(
        cls, provider: ResolvedProvider, *, session: requests.Session | None = None
    ) -> NacionalClient:
        """The client of a registry entry: its endpoint is the base URL (".../SefinNacional"),
        its duplicate_rps_codes the codes of a DPS already used (E0014)."""
        config = provider.config
        return cls(
            provider.endpoint,
            session=session,
            timeout=config.timeout.as_tuple(),
            duplicate_dps_codes=config.duplicate_rps_codes,
            settle_seconds=config.settle_seconds,
        )

    # -- operations

    def emitir(self, signed_dps: bytes) -> GerarNfseResult:
        """POST /nfse: Issued (201), Rejected (the service's `erros` on 400/403/422; duplicate
        for E0014), or TemporaryFailure for anything else (5xx, timeout, unreadable answer)."""
        expected = dps_id_of(signed_dps)
        body = encode_dps(signed_dps)

        def run(deadline_at: float) -> GerarNfseResult:
            answer = self._send("POST", "/nfse", body, deadline_at)
            return self._emitir_answer(answer, expected)

        return self._run("emitir", run)

    def consultar_dps(self, rps: RpsKey) -> ConsultaResult:
        """GET /dps/{idDps} then GET /nfse/{chave}: Issued; RpsNotFound only for the DPS
        consult's own 404; TemporaryFailure for anything else."""
        if rps.municipio is None:
            raise ValueError("an NFS-e Nacional consult needs the RPS's municipio")
        identifier = dps_id(rps.municipio, rps.cnpj, rps.serie, rps.numero)

        def run(deadline_at: float) -> ConsultaResult:
            answer = self._send("GET", f"/dps/{identifier}", None, deadline_at)
            if answer.status == 404:  # the API's "no NFS-e for this DPS"
                return self._not_found(answer)
            if answer.status != 200:
                raise _Problem(
                    FailureKind.HTTP_STATUS,
                    f"DPS consult: HTTP {answer.status}",
                    answer.status,
                    answer.retry_after,
                )
            found = _json_object(answer.body)
            chave = _text(_field(found, "chaveAcesso"))
            if chave is None or not is_chave_acesso(chave):
                raise _Problem(FailureKind.INVALID_ANSWER, "DPS consult without a valid chave")
            answered_id = _text(_field(found, "idDps"))
            if answered_id is not None and answered_id != identifier:
                raise _Problem(FailureKind.INVALID_ANSWER, f"DPS consult answered {answered_id}")
            nfse = self._send("GET", f"/nfse/{chave}", None, deadline_at)
            if nfse.status != 200:
                # The DPS has an NFS-e, its document is not available (yet): undecided.
                kind = FailureKind.INCONCLUSIVE if nfse.status == 404 else FailureKind.HTTP_STATUS
                raise _Problem(
                    kind, f"NFS-e {chave}: HTTP {nfse.status}", nfse.status, nfse.retry_after
                )
            document = _json_object(nfse.body)
            if _text(_field(document, "chaveAcesso")) not in (None, chave):
                raise _Problem(FailureKind.INVALID_ANSWER, "the NFS-e answer names another chave")
            merged = {**document, "chaveAcesso": chave, "idDps": identifier}
            return issued_from_nfse(
                merged, expected_dps_id=identifier, max_bytes=self.max_answer_bytes
            )

        return self._run("consultar_dps", run)

    # -- answers

    def _emitir_answer(self, answer: _Answer, expected_dps_id: str | None) -> GerarNfseResult:
        status = answer.status
        if status in (200, 201):
            return issued_from_nfse(
                _json_object(answer.body),
                expected_dps_id=expected_dps_id,
                max_bytes=self.max_answer_bytes,
            )
        if 200 <= status < 300:
            raise _Problem(FailureKind.INVALID_ANSWER, f"unexpected HTTP {status}", status)
        messages: tuple[ProviderMessage, ...] = ()
        try:
            messages = service_messages(_json_object(answer.body))
        except _Problem:
            messages = ()
        if status in REJECTION_STATUSES and messages:
            return Rejected(
                messages=messages,
                duplicate_rps=any(m.codigo in self.duplicate_dps_codes for m in messages),
            )
        detail = f": {_summary(messages)}" if messages else ""
        raise _Problem(
            FailureKind.HTTP_STATUS, f"HTTP {status}{detail}", status, answer.retry_after
        )

    def _not_found(self, answer: _Answer) -> RpsNotFound:
        """A 404 of the DPS consult is "not found" only in the service's own words: its error
        answer with at least one message (and, when configured, only the configured codes). A
        bare 404 (a proxy, a wrong base URL) proves nothing."""
        try:
            messages = service_messages(_json_object(answer.body))
        except _Problem as problem:
            raise _Problem(
                FailureKind.INCONCLUSIVE, f"HTTP 404 without the service's answer ({problem})", 404
            ) from problem
        if not messages:
            raise _Problem(FailureKind.INCONCLUSIVE, "HTTP 404 without the service's message", 404)
        allowed = self.dps_not_found_codes
        if allowed is not None and any(m.codigo not in allowed for m in messages):
            raise _Problem(
                FailureKind.INCONCLUSIVE, f"consult undecided: {_summary(messages)}", 404
            )
        return RpsNotFound(messages)

    # -- transport

    def _run(self, operation: str, body: Callable[[float], T]) -> T | TemporaryFailure:
        """Run one call's exchanges under one deadline; every failure becomes a value."""
        started = time.monotonic()
        deadline = CallDeadline(self.max_call_seconds)
        try:
            with deadline:
                result = body(started + self.max_call_seconds)
        except requests.Timeout as exc:
            return self.failed(operation, started, FailureKind.TIMEOUT, type(exc).__name__)
        except (requests.RequestException, _Problem) as exc:
            if deadline.expired:
                # The connection was cut at the call's deadline (a service holding it open).
                return self.failed(
                    operation, started, FailureKind.TIMEOUT, "not complete by the call deadline"
                )
            if isinstance(exc, _Problem):
                return self.failed(
                    operation,
                    started,
                    exc.kind,
                    exc.reason,
                    status=exc.status,
                    retry_after=exc.retry_after,
                )
            return self.failed(
                operation,
                started,
                FailureKind.CONNECTION,
                f"connection failed: {type(exc).__name__}",
            )
        log.info(
            "provider answered",
            extra={
                "operation": operation,
                "endpoint": self.base_url,
                "outcome": type(result).__name__,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return result

    def _send(self, method: str, path: str, body: bytes | None, deadline_at: float) -> _Answer:
        response = self._session.request(
            method,
            self.base_url + path,
            data=body,
            headers=_JSON_HEADERS if body is not None else {"Accept": "application/json"},
            timeout=self.timeout,
            allow_redirects=False,
            stream=True,
        )
        try:
            # The read timeout bounds each socket read; this bounds the whole answer.
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(chunk_size=65536):
                size += len(chunk)
                if size > self.max_answer_bytes:
                    raise _Problem(FailureKind.INVALID_ANSWER, "answer larger than the limit")
                if time.monotonic() > deadline_at:
                    raise _Problem(FailureKind.TIMEOUT, "answer not complete by the deadline")
                chunks.append(chunk)
        finally:
            response.close()
        return _Answer(response.status_code, b"".join(chunks), retry_after_of(response))
