"""A municipality NFS-e web service on loopback: ABRASF 2.04 SOAP, strict checks, scripted faults.

It plays the other side of nfse_core.providers.abrasf for the tests, `make demo` and the chaos
run, and on purpose shares no code with it: it imports nothing from nfse_core. A test whose
both sides run our code would only prove that we agree with ourselves, so everything a
provider checks is done here with other means:

- XMLDSig signatures are verified with xmlsec (libxmlsec1), with the public key of the
  X509Certificate each Signature carries; only enveloped C14N 1.0 signatures with RSA-SHA1 or
  RSA-SHA256 (SHA1 or SHA256 digests) are accepted, and each must reference the Id of the
  element it follows (InfDeclaracaoPrestacaoServico, LoteRps, InfPedidoCancelamento).
- The certificate must name the prestador: the CNPJ of an ICP-Brasil e-CNPJ certificate is
  read from its subjectAltName otherName 2.16.76.1.3.3 or from the suffix of its subject CN
  ("RAZAO SOCIAL:CNPJ") with the cryptography package.
- Requests are parsed by this module's own hardened lxml parser and validated against the
  ABRASF 2.04 XSD of the installed nfselib-legacy package, compiled once per process.

It keeps the NFS-e it issued in memory keyed by (prestador, numero, serie, tipo) and refuses a
second GerarNfse for the same RPS with E10 ("RPS já informado."), and answers a consult for an
RPS it does not know with E4 ("Esse RPS não foi enviado para a nossa base de dados"), the codes
of the ABRASF error table. The E9xx codes are the simulator's own.

Faults are set at start (FaultConfig), from Python (`sim.set_faults(...)`, `sim.force(...)`)
or over HTTP (`POST /_admin/faults` with a JSON object of FaultConfig fields). All are off by
default; every injected one is counted in `stats()["faults_injected"]` under the name given:

- latency: seconds added before each SOAP request is handled (fixed or a uniform range).
- error_rate ("http_<status>"): HTTP error_status (500/502/503/504), no envelope.
- soap_fault_rate ("soap_fault"): a SOAP Fault in an HTTP 500 answer; nothing processed.
- soap_fault_200_rate ("soap_fault_200"): a SOAP Fault in an HTTP 200 answer, as several .NET
  and Java providers send; nothing processed.
- timeout_rate ("timeout"): no answer for timeout_seconds, then the connection is closed;
  nothing processed.
- lost_rate ("lost"): GerarNfse issues the NFS-e, then closes the connection at once without
  an answer.
- issued_then_timeout_rate ("issued_then_timeout"): GerarNfse issues the NFS-e, then keeps
  the connection open without a word for timeout_seconds, then closes it.
- consult_lag_seconds ("consult_lag"): an NFS-e issued less than this many seconds ago is not
  yet visible to ConsultarNfsePorRps, which answers E4 for it, as providers whose consult reads
  a replica or an asynchronous pipeline do; GerarNfse's duplicate check (E10) sees it at once.
- consult_internal_error_rate ("consult_internal_error"): ConsultarNfsePorRps answers a
  ListaMensagemRetorno holding both E4 and E999 ("Erro interno ao processar a consulta"),
  whether or not the NFS-e exists. Such an answer is no proof that nothing was issued.
- drip_rate ("drip"): the request is processed as usual, then the whole HTTP answer (status
  line, headers, body) is written drip_bytes at a time with drip_interval_seconds between
  writes (by default 1 byte every 0.8 s), so a client whose per-read timeout is 1 s never
  times out on a single read; only a deadline on the whole call stops it. The drip ends as
  soon as the client goes away or the simulator stops (`stats()["drips_in_progress"]`).

Outcomes can also be forced per RPS number (`force()`, FaultConfig.forced) or by a marker in
Discriminacao: [sim:reject], [sim:temporary], [sim:lost] (first time only), [sim:timeout],
[sim:fault]. `GET /_admin/stats` counts requests, issuances per RPS, refused duplicates and
injected faults, so tests can assert "exactly one issuance".

    with ProviderSimulator() as sim:
        client = AbrasfSoapClient(sim.url)

    python -m nfse_local.simulator --port 8089
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import json
import logging
import random
import secrets
import select
import signal
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache, partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

log = logging.getLogger(__name__)

NFSE_NS: Final = "http://www.abrasf.org.br/nfse.xsd"
DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
WSDL_NS: Final = "http://nfse.abrasf.org.br"
MAX_REQUEST_BYTES: Final = 2_000_000
_BRT = timezone(timedelta(hours=-3))

Message = tuple[str, str, str | None]  # Codigo, Mensagem, Correcao

# E4 and E10 are the ABRASF error table's codes and wording. The E9xx codes are this
# simulator's own, apart from the table's, so that a test can tell which check refused a
# document. (E904 was its old "RPS not found"; the consult now answers the table's E4.)
RPS_NOT_FOUND: Final[Message] = (
    "E4",
    "Esse RPS não foi enviado para a nossa base de dados",
    "Envie o RPS para emissão da NFS-e.",
)
DUPLICATE_RPS: Final[Message] = (
    "E10",
    "RPS já informado.",
    "Para essa Inscrição Municipal/CNPJ já existe um RPS informado com o mesmo número, série e"
    " tipo.",
)
SCHEMA_INVALID: Final[Message] = ("E900", "Arquivo em desacordo com o XML Schema.", None)
SIGNATURE_INVALID: Final[Message] = ("E901", "Assinatura digital ausente ou inválida.", None)
CERT_MISMATCH: Final[Message] = ("E902", "Certificado não pertence ao prestador.", None)
FORCED_REJECT: Final[Message] = ("E903", "Rejeição simulada.", "Remova o marcador [sim:reject].")
NFSE_NOT_FOUND: Final[Message] = ("E905", "NFS-e não encontrada.", None)
ALREADY_CANCELLED: Final[Message] = ("E906", "NFS-e já cancelada.", None)
UNKNOWN_OPERATION: Final[Message] = ("E907", "Operação não suportada pelo simulador.", None)
CONSULT_INTERNAL_ERROR: Final[Message] = (
    "E999",
    "Erro interno ao processar a consulta. Tente novamente.",
    None,
)


class Forced(StrEnum):
    REJECT = "reject"
    TEMPORARY = "temporary"
    LOST = "lost"
    TIMEOUT = "timeout"
    SOAP_FAULT = "fault"


_RATES: Final = (
    "error_rate",
    "soap_fault_rate",
    "soap_fault_200_rate",
    "timeout_rate",
    "lost_rate",
    "issued_then_timeout_rate",
    "consult_internal_error_rate",
    "drip_rate",
)


@dataclass(frozen=True)
class FaultConfig:
    """Injected misbehaviour; rates are probabilities per SOAP request (0..1), all off by default.

    The module docstring says what each one does and under which name it is counted.
    """

    latency: float | tuple[float, float] = 0.0  # seconds, fixed or a uniform range
    error_rate: float = 0.0  # HTTP error_status without an envelope
    error_status: int = 503
    soap_fault_rate: float = 0.0  # HTTP 500 with a SOAP Fault
    timeout_rate: float = 0.0  # no answer for timeout_seconds, nothing processed
    timeout_seconds: float = 30.0
    lost_rate: float = 0.0  # GerarNfse issues, then the connection closes unanswered
    forced: dict[int, Forced] = field(default_factory=dict)  # RPS numero -> outcome
    seed: int | None = None
    consult_lag_seconds: float = 0.0  # ConsultarNfsePorRps does not see younger NFS-e
    issued_then_timeout_rate: float = 0.0  # GerarNfse issues, then silence for timeout_seconds
    drip_rate: float = 0.0  # the answer trickles out drip_bytes at a time
    drip_interval_seconds: float = 0.8
    drip_bytes: int = 1
    soap_fault_200_rate: float = 0.0  # HTTP 200 with a SOAP Fault
    consult_internal_error_rate: float = 0.0  # consult answers E4 + E999

    def __post_init__(self) -> None:
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_status not in (500, 502, 503, 504):
            raise ValueError("error_status must be 500, 502, 503 or 504")
        low, high = self.latency if isinstance(self.latency, tuple) else (self.latency,) * 2
        if low < 0 or high < low:
            raise ValueError("latency must be >= 0 (and min <= max)")
        if self.timeout_seconds < 0 or self.consult_lag_seconds < 0:
            raise ValueError("timeout_seconds and consult_lag_seconds must be >= 0")
        if self.drip_interval_seconds < 0:
            raise ValueError("drip_interval_seconds must be >= 0")
        if isinstance(self.drip_bytes, bool) or not isinstance(self.drip_bytes, int):
            raise ValueError("drip_bytes must be an integer")
        if self.drip_bytes < 1:
            raise ValueError("drip_bytes must be at least 1")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency"] = list(self.latency) if isinstance(self.latency, tuple) else self.latency
        data["forced"] = {str(k): v.value for k, v in self.forced.items()}
        return data

    def updated(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with `changes` (JSON-like values, as the admin endpoint receives them)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        values = dict(changes)
        if isinstance(values.get("latency"), list):
            low, high = values["latency"]
            values["latency"] = (float(low), float(high))
        if "forced" in values:
            values["forced"] = {int(k): Forced(v) for k, v in dict(values["forced"]).items()}
        return replace(self, **values)


@dataclass
class StoredNfse:
    numero: int
    codigo_verificacao: str
    issued_at: datetime
    comp_nfse: etree._Element
    cnpj: str
    inscricao_municipal: str | None
    codigo_municipio: str
    cancelled_at: datetime | None = None
    # The consult lag is measured on the monotonic clock, immune to wall-clock steps.
    issued_monotonic: float = field(default_factory=time.monotonic)


RpsKeyTuple = tuple[str, int, str, int]  # cnpj, numero, serie, tipo


class _Drop(Exception):
    """Close the connection without an answer (lost answer, timeout)."""


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "text/xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drip: tuple[float, int] | None = None  # (seconds between writes, bytes per write)


# --------------------------------------------------------------------------- hardened parsing


class UnreadableXml(ValueError):
    """A document the simulator refuses to read: too large, a DOCTYPE, or not XML."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def parse_untrusted(data: bytes, *, max_bytes: int = MAX_REQUEST_BYTES) -> etree._Element:
    """The root of `data`, read without DTDs, entities, network or huge-tree allowances.

    The size is checked before libxml2 sees a byte. A document that declares a DOCTYPE is
    refused whatever it declares: no ABRASF message has one, and it is where entity tricks
    (billion laughs, external entities) live.
    """
    if len(data) > max_bytes:
        raise UnreadableXml("too_large", f"{len(data)} bytes is more than {max_bytes}")
    # One parser per call: an lxml parser must not be used by two threads at once.
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise UnreadableXml("malformed", str(exc)) from exc
    docinfo: Any = root.getroottree().docinfo  # `doctype` is missing from the stubs
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnreadableXml("doctype", "documents with a DOCTYPE are not accepted")
    return root


# --------------------------------------------------------------------------- XSD

# The ABRASF copy in nfselib-legacy has no targetNamespace; the ISSNET copy is the same 2.04
# schema with the ABRASF target namespace, the one the documents are written in.
_SCHEMA_FILE: Final = "schemas/NFSe/ISSNET/nfse_v2-04.xsd"
# lxml keeps a validator's error log on the validator object, so two threads validating at
# once would read each other's errors; validation takes about a millisecond.
_SCHEMA_LOCK = threading.Lock()


@cache
def _schema() -> etree.XMLSchema:
    path = Path(str(metadata.distribution("nfselib-legacy").locate_file(_SCHEMA_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"ABRASF 2.04 XSD not at {path}; is nfselib-legacy installed?")
    # A file of an installed package, not a request: its xmldsig import is read from disk.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(path), parser))


def schema_errors(document: etree._Element) -> list[str]:
    """Every XSD violation of `document` (empty when valid)."""
    schema = _schema()
    with _SCHEMA_LOCK:
        if schema.validate(document):
            return []
        log_entries: Any = schema.error_log  # the stubs do not type the entries
        return [f"line {e.line}: {e.message}" for e in log_entries]


# --------------------------------------------------------------------------- IBGE

# IBGE code of each federative unit, the first two digits of a municipality code.
_UF_BY_IBGE_PREFIX: Final[dict[str, str]] = {
    "11": "RO", "12": "AC", "13": "AM", "14": "RR", "15": "PA", "16": "AP", "17": "TO",
    "21": "MA", "22": "PI", "23": "CE", "24": "RN", "25": "PB", "26": "PE", "27": "AL",
    "28": "SE", "29": "BA",
    "31": "MG", "32": "ES", "33": "RJ", "35": "SP",
    "41": "PR", "42": "SC", "43": "RS",
    "50": "MS", "51": "MT", "52": "GO", "53": "DF",
}  # fmt: skip


def uf_of_ibge(code: str) -> str | None:
    """The UF of a 7-digit IBGE municipality code, or None when the prefix is no UF."""
    code = code.strip()
    if len(code) != 7 or not code.isdigit():
        return None
    return _UF_BY_IBGE_PREFIX.get(code[:2])


# --------------------------------------------------------------------------- XMLDSig


class SignatureProblem(Exception):
    """A document without a signature, or with one that does not verify."""


def _ds(local: str) -> str:
    return f"{{{DSIG_NS}}}{local}"


_C14N_1_0: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
_ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_SIGNATURE_METHODS: Final = frozenset(
    {
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    }
)
_DIGEST_METHODS: Final = frozenset(
    {"http://www.w3.org/2000/09/xmldsig#sha1", "http://www.w3.org/2001/04/xmlenc#sha256"}
)
_TRANSFORMS: Final = frozenset({_ENVELOPED, _C14N_1_0})
# The same allow-lists for libxmlsec1 itself, so that nothing else runs even if the checks
# on the Signature's text above missed a case.
_XMLSEC_SIGNATURE_TRANSFORMS: Final = (
    xmlsec.constants.TransformInclC14N,
    xmlsec.constants.TransformRsaSha1,
    xmlsec.constants.TransformRsaSha256,
)
_XMLSEC_REFERENCE_TRANSFORMS: Final = (
    xmlsec.constants.TransformEnveloped,
    xmlsec.constants.TransformInclC14N,
    xmlsec.constants.TransformSha1,
    xmlsec.constants.TransformSha256,
)

# The elements each signed document must have signed (the Signature follows each of them).
# The RPS signatures inside a lot are optional in the XSD; when present they are verified too.
_MUST_BE_SIGNED: Final[dict[str, tuple[str, ...]]] = {
    "GerarNfseEnvio": ("Rps/InfDeclaracaoPrestacaoServico",),
    "EnviarLoteRpsSincronoEnvio": ("LoteRps",),
    "CancelarNfseEnvio": ("Pedido/InfPedidoCancelamento",),
}


def verify_signatures(document: etree._Element) -> list[x509.Certificate]:
    """Verify every Signature in `document`; the certificate that verified each, in order.

    Proves integrity and that the signer holds the key of the certificate it shows, not that
    the certificate chains to ICP-Brasil (the simulator's test certificates are self-signed).
    Each Signature must reference the Id of the element right before it and every Id in the
    document must be unique, so that a valid signature cannot be pointed at other content
    (signature wrapping).
    """
    signatures = list(document.iter(_ds("Signature")))
    if not signatures:
        raise SignatureProblem("the document is not signed")
    ids: Counter[str] = Counter()
    for element in document.iter(etree.Element):
        for name, value in element.attrib.items():
            if etree.QName(name).localname == "Id":
                ids[str(value)] += 1
    repeated = sorted(value for value, count in ids.items() if count > 1)
    if repeated:
        raise SignatureProblem(f"Id values used more than once: {repeated}")
    local = etree.QName(document).localname
    for path in _MUST_BE_SIGNED.get(local, ()):
        for target in document.iterfind(_nfse_path(path)):
            follower = target.getnext()
            if follower is None or follower.tag != _ds("Signature"):
                raise SignatureProblem(f"{etree.QName(target).localname} is not signed")
    # xmlsec resolves URI="#x" through the document's ID table; "Id" is no ID by itself.
    xmlsec.tree.add_ids(document, ["Id"])
    return [_verify_one(signature) for signature in signatures]


def _verify_one(signature: etree._Element) -> x509.Certificate:
    signed_info = signature.find(_ds("SignedInfo"))
    if signed_info is None:
        raise SignatureProblem("signature without SignedInfo")
    references = signed_info.findall(_ds("Reference"))
    if len(references) != 1:
        raise SignatureProblem("each signature must hold exactly one Reference")
    reference = references[0]
    uri = reference.get("URI", "")
    signed = signature.getprevious()
    if not uri.startswith("#") or signed is None or signed.get("Id") != uri[1:]:
        raise SignatureProblem(f"signature reference {uri!r} is not the element it follows")
    c14n = signed_info.find(_ds("CanonicalizationMethod"))
    method = signed_info.find(_ds("SignatureMethod"))
    digest = reference.find(_ds("DigestMethod"))
    transforms = [t.get("Algorithm") for t in reference.iterfind(f"{_ds('Transforms')}/*")]
    if (
        c14n is None
        or c14n.get("Algorithm") != _C14N_1_0
        or method is None
        or method.get("Algorithm") not in _SIGNATURE_METHODS
        or digest is None
        or digest.get("Algorithm") not in _DIGEST_METHODS
        or any(t not in _TRANSFORMS for t in transforms)
    ):
        raise SignatureProblem(f"signature of {uri} uses an algorithm not accepted here")
    certificates = _key_info_certificates(signature)
    if not certificates:
        raise SignatureProblem("signature carries no usable X509Certificate")
    # A KeyInfo may carry the chain too; the signer's certificate is the one whose key verifies.
    for certificate in certificates:
        if _xmlsec_verifies(signature, certificate):
            return certificate
    raise SignatureProblem(f"signature of {uri} does not verify")


def _key_info_certificates(signature: etree._Element) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for node in signature.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}"):
        try:
            der = base64.b64decode("".join((node.text or "").split()), validate=True)
            certificate = x509.load_der_x509_certificate(der)
        except (binascii.Error, ValueError):
            continue
        if isinstance(certificate.public_key(), rsa.RSAPublicKey):
            found.append(certificate)
    return found


def _xmlsec_verifies(signature: etree._Element, certificate: x509.Certificate) -> bool:
    context = xmlsec.SignatureContext()
    for transform in _XMLSEC_SIGNATURE_TRANSFORMS:
        context.enable_signature_transform(transform)
    for transform in _XMLSEC_REFERENCE_TRANSFORMS:
        context.enable_reference_transform(transform)
    # The bare public key: libxmlsec1 would otherwise judge the certificate itself (dates,
    # chain), which is the provider's ICP-Brasil policy, not what a test certificate can meet.
    public_pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        context.key = xmlsec.Key.from_memory(public_pem, xmlsec.constants.KeyDataFormatPem)
        context.verify(signature)
    except xmlsec.Error:
        return False
    return True


# ICP-Brasil: the e-CNPJ's subjectAltName otherName holding the company's CNPJ.
CNPJ_OTHER_NAME_OID: Final = x509.ObjectIdentifier("2.16.76.1.3.3")
# Inner value types seen for ICP-Brasil otherNames: OCTET STRING, UTF8String, PrintableString,
# IA5String.
_DER_STRING_TAGS: Final = frozenset({0x04, 0x0C, 0x13, 0x16})
_DER_EXPLICIT_0: Final = 0xA0


def _der_string(data: bytes, *, unwrap: bool = True) -> str | None:
    """The text of one DER string value (otherName values), or None when it is not one."""
    if len(data) < 2:
        return None
    tag, first = data[0], data[1]
    offset = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return None
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset += count
    content = data[offset : offset + length]
    if len(content) != length:
        return None
    if tag == _DER_EXPLICIT_0 and unwrap:  # some encoders keep the [0] EXPLICIT wrapper
        return _der_string(content, unwrap=False)
    if tag not in _DER_STRING_TAGS:
        return None
    return content.decode("ascii", errors="replace")


def certificate_cnpjs(certificate: x509.Certificate) -> set[str]:
    """Every CNPJ the certificate names: its otherName 2.16.76.1.3.3 and its CN suffix.

    Either is enough for a match; real e-CNPJ certificates carry both, the throwaway test
    certificates of nfse_local.certs only the CN form "RAZAO SOCIAL:CNPJ".
    """
    names: set[str] = set()
    try:
        alt_names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        alt_names = None
    except ValueError:  # an extension cryptography cannot parse: judge by the subject alone
        alt_names = None
    if alt_names is not None:
        for other in alt_names.value.get_values_for_type(x509.OtherName):
            if other.type_id == CNPJ_OTHER_NAME_OID:
                text = _der_string(other.value)
                if text and text.strip():
                    names.add(text.strip().upper())
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        text = value if isinstance(value, str) else value.decode("utf-8", errors="replace")
        if ":" in text:
            suffix = text.rsplit(":", 1)[1].strip().upper()
            if suffix:
                names.add(suffix)
    return names


def certificate_names_prestador(certificate: x509.Certificate, cnpj: str) -> bool:
    wanted = cnpj.strip().upper()
    return bool(wanted) and wanted in certificate_cnpjs(certificate)


# --------------------------------------------------------------------------- documents


def _n(local: str) -> str:
    return f"{{{NFSE_NS}}}{local}"


def _nfse_path(path: str) -> str:
    return "/".join(_n(step) for step in path.split("/"))


def _any(path: str) -> str:
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


def _leaf(parent: etree._Element, local: str, text: str) -> etree._Element:
    node = etree.SubElement(parent, _n(local))
    node.text = text
    return node


def _message_list(parent: etree._Element, messages: list[Message]) -> None:
    lista = etree.SubElement(parent, _n("ListaMensagemRetorno"))
    for codigo, mensagem, correcao in messages:
        item = etree.SubElement(lista, _n("MensagemRetorno"))
        _leaf(item, "Codigo", codigo)
        _leaf(item, "Mensagem", mensagem)
        if correcao:
            _leaf(item, "Correcao", correcao)


def _new_doc(local: str) -> etree._Element:
    nsmap: Any = {None: NFSE_NS}
    return etree.Element(_n(local), nsmap=nsmap)


class SimulatorState:
    """Issued NFS-e, counters and fault settings; every access under one lock."""

    def __init__(self, faults: FaultConfig) -> None:
        self._lock = threading.RLock()
        self._faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - fault injection, not security
        self._store: dict[RpsKeyTuple, StoredNfse] = {}
        self._by_number: dict[int, RpsKeyTuple] = {}
        self._next_number = 1
        self._lost_once: set[RpsKeyTuple] = set()
        self.drips_in_progress = 0  # a gauge, not reset: those handlers are still running
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.total_requests = 0
        self.requests_by_operation: Counter[str] = Counter()
        self.issued = 0
        self.duplicates_refused = 0
        self.rejected = 0
        self.cancelled = 0
        self.consults = 0
        self.faults_injected: Counter[str] = Counter()
        self.issuances_per_rps: Counter[str] = Counter()
        # Mutual TLS: the subject CN of the client certificate of each SOAP request.
        self.tls_client_subjects: Counter[str] = Counter()

    @property
    def faults(self) -> FaultConfig:
        with self._lock:
            return self._faults

    def set_faults(self, faults: FaultConfig) -> None:
        with self._lock:
            if faults.seed is not None and faults.seed != self._faults.seed:
                self._rng = random.Random(faults.seed)  # noqa: S311
            self._faults = faults

    def roll(self, rate: float) -> bool:
        # A fault that is off draws no number, so seeded runs that do not use the newer
        # faults see the same sequence as before they existed.
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def latency(self) -> float:
        with self._lock:
            value = self._faults.latency
            if isinstance(value, tuple):
                return self._rng.uniform(*value)
            return value

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults_injected[kind] += 1

    def count_request(self, operation: str) -> None:
        with self._lock:
            self.total_requests += 1
            self.requests_by_operation[operation] += 1

    def count_consult(self) -> None:
        with self._lock:
            self.consults += 1

    def count_duplicates(self, count: int) -> None:
        with self._lock:
            self.duplicates_refused += count

    def count_rejection(self) -> None:
        with self._lock:
            self.rejected += 1

    def drip_started(self) -> None:
        with self._lock:
            self.drips_in_progress += 1

    def drip_ended(self) -> None:
        with self._lock:
            self.drips_in_progress -= 1

    def first_loss(self, key: RpsKeyTuple) -> bool:
        with self._lock:
            if key in self._lost_once:
                return False
            self._lost_once.add(key)
            return True

    def issue(
        self, key: RpsKeyTuple, build: Callable[[int], StoredNfse]
    ) -> tuple[StoredNfse, bool]:
        """(the NFS-e of `key`, whether it was issued by this call)."""
        with self._lock:
            existing = self._store.get(key)
            if existing is not None:
                self.duplicates_refused += 1
                return existing, False
            numero = self._next_number
            self._next_number += 1
            stored = build(numero)
            self._store[key] = stored
            self._by_number[numero] = key
            self.issued += 1
            self.issuances_per_rps["/".join(str(part) for part in key)] += 1
            return stored, True

    def find(self, key: RpsKeyTuple) -> StoredNfse | None:
        with self._lock:
            return self._store.get(key)

    def find_number(self, numero: int) -> StoredNfse | None:
        with self._lock:
            key = self._by_number.get(numero)
            return None if key is None else self._store[key]

    def record_tls_client(self, subject_cn: str) -> None:
        with self._lock:
            self.tls_client_subjects[subject_cn] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total_requests": self.total_requests,
                "requests_by_operation": dict(self.requests_by_operation),
                "issued": self.issued,
                "duplicates_refused": self.duplicates_refused,
                "rejected": self.rejected,
                "cancelled": self.cancelled,
                "consults": self.consults,
                "faults_injected": dict(self.faults_injected),
                "issuances_per_rps": dict(self.issuances_per_rps),
                "tls_client_subjects": dict(self.tls_client_subjects),
                "stored": len(self._store),
                "drips_in_progress": self.drips_in_progress,
            }

    def reset(self) -> None:
        with self._lock:
            self._store.clear()
            self._by_number.clear()
            self._lost_once.clear()
            self._next_number = 1
            self._reset_counters()


def _subject_cn(peer: Any) -> str:
    """The CN of a verified peer certificate (ssl's getpeercert() form); empty if none."""
    for rdn in (peer or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    simulator: ProviderSimulator


# How often a dripping handler looks at the client and at the stop flag while it waits.
_DRIP_POLL_SECONDS: Final = 0.05


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "nfse-simulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator: " + format, *args)

    # -- plumbing

    def _send(self, reply: _Reply) -> None:
        if reply.drip is not None:
            self._drip(reply, *reply.drip)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False, default=str).encode()
        self._send(_Reply(status, body, "application/json"))

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return None
        if int(length) > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
            return None
        return self.rfile.read(int(length))

    # -- a slow answer

    def _raw_answer(self, reply: _Reply) -> bytes:
        """The whole HTTP answer as bytes: what send_response & co. would write."""
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = ""
        headers = {
            "Server": self.version_string(),
            "Date": self.date_time_string(),
            "Content-Type": reply.content_type,
            "Content-Length": str(len(reply.body)),
            **reply.headers,
        }
        head = f"{self.protocol_version} {reply.status} {phrase}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        return head.encode("latin-1") + reply.body

    def _drip(self, reply: _Reply, interval: float, step: int) -> None:
        """Write the answer `step` bytes at a time, `interval` seconds apart."""
        sim = self.server.simulator
        data = self._raw_answer(reply)
        self.log_request(reply.status)
        sim.state.drip_started()
        try:
            for offset in range(0, len(data), step):
                if offset and not self._pause(interval):
                    self.close_connection = True
                    return
                self.wfile.write(data[offset : offset + step])
        except OSError:  # the client went away between two checks
            self.close_connection = True
        finally:
            sim.state.drip_ended()

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds`; False as soon as the simulator stops or the client hangs up."""
        sim = self.server.simulator
        deadline = time.monotonic() + seconds
        while True:
            if sim.stopping:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            wait = min(remaining, _DRIP_POLL_SECONDS)
            try:
                readable, _, _ = select.select([self.connection], [], [], wait)
            except (OSError, ValueError):  # the socket is closed already
                return False
            if readable:
                if self._peer_closed():
                    return False
                # Bytes are waiting (a pipelined request): not a hang-up, but do not spin.
                sim.wait(wait)

    def _peer_closed(self) -> bool:
        connection = self.connection
        if isinstance(connection, ssl.SSLSocket):
            # TLS has no peek; a client that left shows up as a write error instead.
            return False
        try:
            return bool(connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    # -- routes

    def do_GET(self) -> None:
        sim = self.server.simulator
        if self.path == "/_admin/stats":
            self._json(HTTPStatus.OK, sim.stats())
        elif self.path == "/_admin/faults":
            self._json(HTTPStatus.OK, sim.faults.as_dict())
        elif self.path in ("/", "/_admin/health"):
            self._json(HTTPStatus.OK, {"status": "ok", "url": sim.url})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        sim = self.server.simulator
        if self.path.startswith("/_admin/"):
            self._admin(sim, body)
            return
        if isinstance(self.connection, ssl.SSLSocket):
            sim.state.record_tls_client(_subject_cn(self.connection.getpeercert()))
        try:
            reply = sim.handle_soap(body)
        except _Drop:
            self.close_connection = True
            return
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            self.close_connection = True

    def _admin(self, sim: ProviderSimulator, body: bytes) -> None:
        if self.path == "/_admin/reset":
            sim.reset()
            self._json(HTTPStatus.OK, {"status": "reset"})
            return
        if self.path != "/_admin/faults":
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        try:
            changes = json.loads(body or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            sim.set_faults(**changes)
        except (ValueError, TypeError) as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._json(HTTPStatus.OK, sim.faults.as_dict())


class ProviderSimulator:
    """The simulator server; a context manager that serves on a free loopback port by default."""

    def __init__(
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
        self.verify_signatures = verify_signatures
        self.require_cert_cnpj_match = require_cert_cnpj_match
        self.state = SimulatorState(faults or FaultConfig())
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> ProviderSimulator:
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server((self.host, self.port), _Handler)
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

    # -- SOAP

    def handle_soap(self, body: bytes) -> _Reply:
        """The answer to one SOAP request; raises _Drop when the connection is to be cut."""
        reply = self._handle_soap(body)
        faults = self.state.faults
        if self.state.roll(faults.drip_rate):
            self.state.count_fault("drip")
            reply.drip = (faults.drip_interval_seconds, faults.drip_bytes)
        return reply

    def _handle_soap(self, body: bytes) -> _Reply:
        try:
            envelope = parse_untrusted(body, max_bytes=MAX_REQUEST_BYTES)
        except UnreadableXml as exc:
            return self._fault(SOAP11_NS, f"Client: unreadable request ({exc.reason})", 400)
        soap_ns = etree.QName(envelope).namespace or SOAP11_NS
        request = envelope.find(f"{{{soap_ns}}}Body/*")
        if etree.QName(envelope).localname != "Envelope" or request is None:
            return self._fault(soap_ns, "Client: not a SOAP envelope", 400)
        operation = etree.QName(request).localname.removesuffix("Request")
        self.state.count_request(operation)

        dados = request.find("nfseDadosMsg")
        if dados is None:
            dados = request.find(f"{{{WSDL_NS}}}nfseDadosMsg")
        if dados is None:
            return self._fault(soap_ns, "Client: nfseDadosMsg missing", 400)
        try:
            if len(dados):
                document = dados[0]
            else:
                text = (dados.text or "").strip().encode("utf-8")
                document = parse_untrusted(text, max_bytes=MAX_REQUEST_BYTES)
        except UnreadableXml:
            return self._answer(soap_ns, operation, self._error_doc(operation, [SCHEMA_INVALID]))

        # Per-request faults first (the provider is down or slow before it looks at the RPS).
        forced = self._forced_outcome(document)
        try:
            self._random_faults(soap_ns)
        except _ReplyNow as now:
            return now.reply
        if forced is Forced.TEMPORARY:
            self.state.count_fault("temporary")
            return _Reply(
                503, b"Service Unavailable (simulated)", "text/plain", {"Retry-After": "1"}
            )
        if forced is Forced.SOAP_FAULT:
            self.state.count_fault("soap_fault")
            return self._fault(soap_ns, "Server: simulated fault")
        if forced is Forced.TIMEOUT:
            self._hang()

        handler = {
            "GerarNfse": self._gerar_nfse,
            "RecepcionarLoteRpsSincrono": self._lote_sincrono,
            "ConsultarNfsePorRps": self._consultar_por_rps,
            "CancelarNfse": self._cancelar,
        }.get(operation)
        if handler is None:
            return self._answer(soap_ns, operation, self._error_doc(operation, [UNKNOWN_OPERATION]))
        return self._answer(soap_ns, operation, handler(document, forced))

    def _random_faults(self, soap_ns: str) -> None:
        faults = self.state.faults
        delay = self.state.latency()
        if delay > 0:
            self._stop.wait(delay)
        if self.state.roll(faults.timeout_rate):
            self._hang()
        if self.state.roll(faults.error_rate):
            self.state.count_fault(f"http_{faults.error_status}")
            raise _ReplyNow(_Reply(faults.error_status, b"simulated error", "text/plain"))
        if self.state.roll(faults.soap_fault_rate):
            self.state.count_fault("soap_fault")
            raise _ReplyNow(self._fault(soap_ns, "Server: simulated fault"))
        if self.state.roll(faults.soap_fault_200_rate):
            self.state.count_fault("soap_fault_200")
            raise _ReplyNow(
                self._fault(soap_ns, "Server: simulated fault in an HTTP 200 answer", 200)
            )

    def _hang(self) -> None:
        self.state.count_fault("timeout")
        self._stop.wait(self.state.faults.timeout_seconds)
        raise _Drop

    def _forced_outcome(self, document: etree._Element) -> Forced | None:
        numero = document.find(f".//{_any('IdentificacaoRps/Numero')}")
        if numero is not None and numero.text and numero.text.strip().isdigit():
            outcome = self.state.faults.forced.get(int(numero.text.strip()))
            if outcome is not None:
                return outcome
        discriminacao = document.find(f".//{_any('Discriminacao')}")
        text = discriminacao.text if discriminacao is not None and discriminacao.text else ""
        for outcome in Forced:
            if f"[sim:{outcome.value}]" in text:
                return outcome
        return None

    # -- checks shared by the operations

    def _check(
        self, document: etree._Element, expected_root: str, signed: bool
    ) -> tuple[list[Message], list[x509.Certificate]]:
        """(problems, the certificate behind each signature) of a request document."""
        if document.tag != _n(expected_root):
            return [(SCHEMA_INVALID[0], f"Esperado {expected_root}.", None)], []
        errors = schema_errors(document)
        if errors:
            return [(SCHEMA_INVALID[0], SCHEMA_INVALID[1], errors[0][:200])], []
        if not (signed and self.verify_signatures):
            return [], []
        try:
            return [], verify_signatures(document)
        except SignatureProblem as exc:
            return [(SIGNATURE_INVALID[0], SIGNATURE_INVALID[1], str(exc)[:200])], []

    def _cert_matches(self, certificates: list[x509.Certificate], cnpj: str) -> bool:
        if not (self.verify_signatures and self.require_cert_cnpj_match):
            return True
        return all(certificate_names_prestador(cert, cnpj) for cert in certificates)

    # -- operations

    def _gerar_nfse(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems, certificates = self._check(document, "GerarNfseEnvio", signed=True)
        if problems:
            return self._rejection("GerarNfseResposta", problems)
        rps = document.find(_n("Rps"))
        assert rps is not None  # the XSD requires it
        key, cnpj = self._rps_key(rps)
        if not self._cert_matches(certificates, cnpj):
            return self._rejection("GerarNfseResposta", [CERT_MISMATCH])
        if forced is Forced.REJECT:
            return self._rejection("GerarNfseResposta", [FORCED_REJECT])
        stored, created = self.state.issue(key, partial(self._build_nfse, rps=rps))
        if not created:
            return self._rejection("GerarNfseResposta", [DUPLICATE_RPS])
        faults = self.state.faults
        lose = (forced is Forced.LOST and self.state.first_loss(key)) or self.state.roll(
            faults.lost_rate
        )
        if lose:
            self.state.count_fault("lost")
            raise _Drop
        if self.state.roll(faults.issued_then_timeout_rate):
            # Issued, then silence: the client's read times out, the NFS-e exists.
            self.state.count_fault("issued_then_timeout")
            self._stop.wait(faults.timeout_seconds)
            raise _Drop
        answer = _new_doc("GerarNfseResposta")
        lista = etree.SubElement(answer, _n("ListaNfse"))
        lista.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _lote_sincrono(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems, certificates = self._check(document, "EnviarLoteRpsSincronoEnvio", signed=True)
        if problems:
            return self._rejection("EnviarLoteRpsSincronoResposta", problems)
        if forced is Forced.REJECT:
            return self._rejection("EnviarLoteRpsSincronoResposta", [FORCED_REJECT])
        rps_list = document.findall(_any("LoteRps/ListaRps/Rps"))
        keys = [self._rps_key(rps) for rps in rps_list]
        if any(not self._cert_matches(certificates, cnpj) for _, cnpj in keys):
            return self._rejection("EnviarLoteRpsSincronoResposta", [CERT_MISMATCH])
        answer = _new_doc("EnviarLoteRpsSincronoResposta")
        numero_lote = document.find(_any("LoteRps/NumeroLote"))
        _leaf(answer, "NumeroLote", numero_lote.text or "0" if numero_lote is not None else "0")
        _leaf(answer, "DataRecebimento", datetime.now(_BRT).replace(microsecond=0).isoformat())
        _leaf(answer, "Protocolo", secrets.token_hex(8))
        duplicates = [key for key, _ in keys if self.state.find(key) is not None]
        if duplicates:
            lista = etree.SubElement(answer, _n("ListaMensagemRetornoLote"))
            for _cnpj, numero, serie, tipo in duplicates:
                item = etree.SubElement(lista, _n("MensagemRetorno"))
                ident = etree.SubElement(item, _n("IdentificacaoRps"))
                _leaf(ident, "Numero", str(numero))
                _leaf(ident, "Serie", serie)
                _leaf(ident, "Tipo", str(tipo))
                _leaf(item, "Codigo", DUPLICATE_RPS[0])
                _leaf(item, "Mensagem", DUPLICATE_RPS[1])
            self.state.count_duplicates(len(duplicates))
            return answer
        lista_nfse = etree.SubElement(answer, _n("ListaNfse"))
        for rps, (key, _) in zip(rps_list, keys, strict=True):
            stored, _created = self.state.issue(key, partial(self._build_nfse, rps=rps))
            lista_nfse.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _consultar_por_rps(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        self.state.count_consult()
        problems, _ = self._check(document, "ConsultarNfseRpsEnvio", signed=False)
        if problems:
            return self._rejection("ConsultarNfseRpsResposta", problems, count=False)
        faults = self.state.faults
        if self.state.roll(faults.consult_internal_error_rate):
            # "Not found" and "we failed" in one list, whether or not the NFS-e exists.
            self.state.count_fault("consult_internal_error")
            return self._rejection(
                "ConsultarNfseRpsResposta", [RPS_NOT_FOUND, CONSULT_INTERNAL_ERROR], count=False
            )
        ident = document.find(_n("IdentificacaoRps"))
        cnpj = document.findtext(_any("Prestador/CpfCnpj/Cnpj")) or document.findtext(
            _any("Prestador/CpfCnpj/Cpf")
        )
        assert ident is not None and cnpj is not None  # the XSD requires both
        key = (
            cnpj.strip(),
            int(ident.findtext(_n("Numero")) or 0),
            (ident.findtext(_n("Serie")) or "").strip(),
            int(ident.findtext(_n("Tipo")) or 0),
        )
        stored = self.state.find(key)
        lag = faults.consult_lag_seconds
        if stored is not None and time.monotonic() - stored.issued_monotonic < lag:
            self.state.count_fault("consult_lag")
            stored = None
        if stored is None:
            return self._rejection("ConsultarNfseRpsResposta", [RPS_NOT_FOUND], count=False)
        answer = _new_doc("ConsultarNfseRpsResposta")
        answer.append(copy.deepcopy(stored.comp_nfse))
        return answer

    def _cancelar(self, document: etree._Element, forced: Forced | None) -> etree._Element:
        problems, certificates = self._check(document, "CancelarNfseEnvio", signed=True)
        if problems:
            return self._rejection("CancelarNfseResposta", problems)
        ident = document.find(_any("Pedido/InfPedidoCancelamento/IdentificacaoNfse"))
        assert ident is not None  # the XSD requires it
        cnpj = ident.findtext(_any("CpfCnpj/Cnpj")) or ""
        if not self._cert_matches(certificates, cnpj):
            return self._rejection("CancelarNfseResposta", [CERT_MISMATCH])
        stored = self.state.find_number(int(ident.findtext(_n("Numero")) or 0))
        if stored is None or stored.cnpj != cnpj:
            return self._rejection("CancelarNfseResposta", [NFSE_NOT_FOUND])
        pedido = document.find(_n("Pedido"))
        assert pedido is not None
        with self.state._lock:  # one cancellation, even for two requests at once
            if stored.cancelled_at is not None:
                return self._rejection("CancelarNfseResposta", [ALREADY_CANCELLED])
            stored.cancelled_at = datetime.now(_BRT).replace(microsecond=0)
            cancelamento = self._cancelamento(pedido, stored.cancelled_at)
            stored.comp_nfse.append(copy.deepcopy(cancelamento))
            self.state.cancelled += 1
        answer = _new_doc("CancelarNfseResposta")
        etree.SubElement(answer, _n("RetCancelamento")).append(cancelamento)
        return answer

    # -- documents

    def _rps_key(self, rps: etree._Element) -> tuple[RpsKeyTuple, str]:
        inf = rps.find(_n("InfDeclaracaoPrestacaoServico"))
        assert inf is not None
        cnpj = (inf.findtext(_any("Prestador/CpfCnpj/Cnpj")) or "").strip()
        ident = inf.find(_any("Rps/IdentificacaoRps"))
        if ident is None:  # optional in the XSD; the simulator keys on the Id then
            return (cnpj, 0, inf.get("Id", ""), 0), cnpj
        key = (
            cnpj,
            int(ident.findtext(_n("Numero")) or 0),
            (ident.findtext(_n("Serie")) or "").strip(),
            int(ident.findtext(_n("Tipo")) or 0),
        )
        return key, cnpj

    def _build_nfse(self, numero: int, rps: etree._Element) -> StoredNfse:
        inf_rps = rps.find(_n("InfDeclaracaoPrestacaoServico"))
        assert inf_rps is not None
        cnpj = (inf_rps.findtext(_any("Prestador/CpfCnpj/Cnpj")) or "").strip()
        im = inf_rps.findtext(_any("Prestador/InscricaoMunicipal"))
        municipio = (inf_rps.findtext(_any("Servico/CodigoMunicipio")) or "3550308").strip()
        uf = uf_of_ibge(municipio) or "SP"
        issued_at = datetime.now(_BRT).replace(microsecond=0)
        codigo = secrets.token_hex(4).upper()[:8]

        comp = _new_doc("CompNfse")
        nfse = etree.SubElement(comp, _n("Nfse"), versao="2.04")
        inf = etree.SubElement(nfse, _n("InfNfse"), Id=f"nfse{numero}")
        _leaf(inf, "Numero", str(numero))
        _leaf(inf, "CodigoVerificacao", codigo)
        _leaf(inf, "DataEmissao", issued_at.isoformat())
        valores = etree.SubElement(inf, _n("ValoresNfse"))
        base = _decimal(inf_rps.findtext(_any("Servico/Valores/ValorServicos")))
        aliquota_text = inf_rps.findtext(_any("Servico/Valores/Aliquota"))
        _leaf(valores, "BaseCalculo", f"{base:.2f}")
        if aliquota_text:
            aliquota = _decimal(aliquota_text)
            _leaf(valores, "Aliquota", f"{aliquota:.2f}")
            _leaf(valores, "ValorIss", f"{(base * aliquota / 100).quantize(Decimal('0.01')):.2f}")
        _leaf(valores, "ValorLiquidoNfse", f"{base:.2f}")
        prestador = etree.SubElement(inf, _n("PrestadorServico"))
        _leaf(prestador, "RazaoSocial", f"EMPRESA {cnpj}")
        endereco = etree.SubElement(prestador, _n("Endereco"))
        _leaf(endereco, "Endereco", "Rua Simulada")
        _leaf(endereco, "Numero", "1")
        _leaf(endereco, "Bairro", "Centro")
        _leaf(endereco, "CodigoMunicipio", municipio)
        _leaf(endereco, "Uf", uf)
        _leaf(endereco, "Cep", "01001000")
        orgao = etree.SubElement(inf, _n("OrgaoGerador"))
        _leaf(orgao, "CodigoMunicipio", municipio)
        _leaf(orgao, "Uf", uf)
        declaracao = etree.SubElement(inf, _n("DeclaracaoPrestacaoServico"))
        for child in rps:
            declaracao.append(copy.deepcopy(child))
        return StoredNfse(
            numero=numero,
            codigo_verificacao=codigo,
            issued_at=issued_at,
            comp_nfse=comp,
            cnpj=cnpj,
            inscricao_municipal=im.strip() if im else None,
            codigo_municipio=municipio,
        )

    @staticmethod
    def _cancelamento(pedido: etree._Element, when: datetime) -> etree._Element:
        node = _new_doc("NfseCancelamento")
        node.set("versao", "2.04")
        confirmacao = etree.SubElement(node, _n("Confirmacao"))
        confirmacao.append(copy.deepcopy(pedido))
        _leaf(confirmacao, "DataHora", when.isoformat())
        return node

    def _rejection(
        self,
        root: str,
        messages: list[Message],
        *,
        count: bool = True,
    ) -> etree._Element:
        if count and messages and messages[0][0] != DUPLICATE_RPS[0]:
            self.state.count_rejection()
        answer = _new_doc(root)
        _message_list(answer, messages)
        return answer

    def _error_doc(self, operation: str, messages: list[Message]) -> etree._Element:
        root = {
            "GerarNfse": "GerarNfseResposta",
            "RecepcionarLoteRpsSincrono": "EnviarLoteRpsSincronoResposta",
            "ConsultarNfsePorRps": "ConsultarNfseRpsResposta",
            "CancelarNfse": "CancelarNfseResposta",
        }.get(operation, "GerarNfseResposta")
        return self._rejection(root, messages)

    def _answer(self, soap_ns: str, operation: str, document: etree._Element) -> _Reply:
        envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
        body = etree.SubElement(envelope, f"{{{soap_ns}}}Body")
        response = etree.SubElement(
            body, f"{{{WSDL_NS}}}{operation}Response", nsmap={"ns2": WSDL_NS}
        )
        output = etree.SubElement(response, "outputXML")
        output.text = etree.tostring(document, encoding="unicode")
        content_type = (
            "application/soap+xml; charset=utf-8"
            if soap_ns == SOAP12_NS
            else "text/xml; charset=utf-8"
        )
        return _Reply(
            200, etree.tostring(envelope, encoding="UTF-8", xml_declaration=True), content_type
        )

    @staticmethod
    def _fault(soap_ns: str, message: str, status: int = 500) -> _Reply:
        # Only a 4xx blames the sender; a Fault in a 200 is the server failing all the same.
        sender = 400 <= status < 500
        envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
        body = etree.SubElement(envelope, f"{{{soap_ns}}}Body")
        fault = etree.SubElement(body, f"{{{soap_ns}}}Fault")
        if soap_ns == SOAP12_NS:
            code = etree.SubElement(fault, f"{{{soap_ns}}}Code")
            etree.SubElement(code, f"{{{soap_ns}}}Value").text = (
                "soap:Sender" if sender else "soap:Receiver"
            )
            reason = etree.SubElement(fault, f"{{{soap_ns}}}Reason")
            text = etree.SubElement(reason, f"{{{soap_ns}}}Text")
            text.set("{http://www.w3.org/XML/1998/namespace}lang", "pt-BR")
            text.text = message
            content_type = "application/soap+xml; charset=utf-8"
        else:
            etree.SubElement(fault, "faultcode").text = "soap:Client" if sender else "soap:Server"
            etree.SubElement(fault, "faultstring").text = message
            content_type = "text/xml; charset=utf-8"
        return _Reply(
            status, etree.tostring(envelope, encoding="UTF-8", xml_declaration=True), content_type
        )


class _ReplyNow(Exception):
    def __init__(self, reply: _Reply) -> None:
        super().__init__("reply now")
        self.reply = reply


def _decimal(value: str | None) -> Decimal:
    try:
        return Decimal((value or "0").strip())
    except InvalidOperation:
        return Decimal(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ABRASF 2.04 provider simulator (loopback)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--error-status", type=int, default=503)
    parser.add_argument("--soap-fault-rate", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--timeout-seconds", type=float, default=30.0)
    parser.add_argument("--lost-rate", type=float, default=0.0)
    parser.add_argument("--issued-then-timeout-rate", type=float, default=0.0)
    parser.add_argument("--consult-lag-seconds", type=float, default=0.0)
    parser.add_argument("--consult-internal-error-rate", type=float, default=0.0)
    parser.add_argument("--soap-fault-200-rate", type=float, default=0.0)
    parser.add_argument("--drip-rate", type=float, default=0.0)
    parser.add_argument("--drip-interval-seconds", type=float, default=0.8)
    parser.add_argument("--drip-bytes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-verify-signatures", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    faults = FaultConfig(
        latency=args.latency,
        error_rate=args.error_rate,
        error_status=args.error_status,
        soap_fault_rate=args.soap_fault_rate,
        timeout_rate=args.timeout_rate,
        timeout_seconds=args.timeout_seconds,
        lost_rate=args.lost_rate,
        seed=args.seed,
        issued_then_timeout_rate=args.issued_then_timeout_rate,
        consult_lag_seconds=args.consult_lag_seconds,
        consult_internal_error_rate=args.consult_internal_error_rate,
        soap_fault_200_rate=args.soap_fault_200_rate,
        drip_rate=args.drip_rate,
        drip_interval_seconds=args.drip_interval_seconds,
        drip_bytes=args.drip_bytes,
    )
    simulator = ProviderSimulator(
        args.host, args.port, faults=faults, verify_signatures=not args.no_verify_signatures
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    simulator.start()
    print(f"provider simulator: {simulator.url} (admin: {simulator.base_url}/_admin/stats)")
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
