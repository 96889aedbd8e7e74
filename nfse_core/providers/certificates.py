"""Where each prestador's A1 certificate (PKCS#12) comes from: files locally, Secrets Manager.

Both adapters return a loaded `Certificate` (cryptography objects, ready for XmlSigner) and
keep it per CNPJ for a while, so the ~40 ms PKCS#12 decryption happens once per TTL, not per
document. Passwords never reach a log line or an exception message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

_CNPJ = re.compile(r"[0-9A-Z]{12}[0-9]{2}")


class CertificateError(Exception):
    """Base of certificate problems; the message names the CNPJ, never the secret."""

    code = "CERTIFICATE_ERROR"

    def __init__(self, cnpj: str, message: str) -> None:
        super().__init__(f"{message} (CNPJ {cnpj})")
        self.cnpj = cnpj


class CertificateNotFound(CertificateError):
    """No certificate is stored for the CNPJ."""

    code = "CERTIFICATE_NOT_FOUND"


class CertificateInvalid(CertificateError):
    """The stored certificate cannot be used: wrong password, corrupt file, not RSA..."""

    code = "CERTIFICATE_INVALID"


class CertificateExpired(CertificateInvalid):
    """Outside its validity period: a provider would refuse the signature (or the TLS
    handshake), so nothing is sent with it."""

    code = "CERTIFICATE_EXPIRED"


class CertificateOfAnotherCompany(CertificateInvalid):
    """The certificate stored under this CNPJ was issued to another CNPJ (a mix-up when it was
    uploaded): signing with it would be refused, or worse, accepted for the wrong company."""

    code = "CERTIFICATE_CNPJ_MISMATCH"


# ICP-Brasil e-CNPJ certificates carry the company's CNPJ in a subjectAltName otherName
# (DOC-ICP-04, OID 2.16.76.1.3.3), and conventionally as the suffix of the subject CN
# ("RAZAO SOCIAL:CNPJ").
ICP_BRASIL_CNPJ_OID = x509.ObjectIdentifier("2.16.76.1.3.3")
# The log line the issuance service writes when a certificate is refused (this module logs
# nothing); a metric filter in template.yaml counts it.
CERTIFICATE_REFUSED_LOG = "certificate refused"
_DER_STRING_TAGS = {0x04, 0x0C, 0x13, 0x16}  # OCTET, UTF8, Printable, IA5 string


def _der_string(value: bytes) -> str | None:
    """The text of a DER-encoded string value (short or long form length)."""
    if len(value) < 2 or value[0] not in _DER_STRING_TAGS:
        return None
    length, start = value[1], 2
    if length & 0x80:
        width = length & 0x7F
        length = int.from_bytes(value[2 : 2 + width], "big")
        start = 2 + width
    try:
        return value[start : start + length].decode("ascii").strip()
    except UnicodeDecodeError:
        return None


def certificate_cnpjs(cert: x509.Certificate) -> frozenset[str]:
    """The CNPJs a certificate names: its ICP-Brasil otherName, and its CN's suffix."""
    found: set[str] = set()
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = None
    if names is not None:
        for other in names.get_values_for_type(x509.OtherName):
            if other.type_id == ICP_BRASIL_CNPJ_OID:
                text = _der_string(other.value)
                if text and _CNPJ.fullmatch(text):
                    found.add(text)
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        text = value.decode() if isinstance(value, bytes) else value
        suffix = text.rsplit(":", 1)[-1].strip() if ":" in text else ""
        if _CNPJ.fullmatch(suffix):
            found.add(suffix)
    return frozenset(found)


def check_usable(cnpj: str, certificate: Certificate, now: datetime) -> None:
    """Refuse a certificate that is expired (or not yet valid), or names another CNPJ."""
    cert = certificate.cert
    if now < cert.not_valid_before_utc:
        raise CertificateExpired(
            cnpj, f"the certificate is valid only from {cert.not_valid_before_utc.date()}"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateExpired(
            cnpj, f"the certificate expired on {cert.not_valid_after_utc.date()}"
        )
    named = certificate_cnpjs(cert)
    if cnpj not in named:
        raise CertificateOfAnotherCompany(
            cnpj,
            "the certificate stored for this company names "
            + (f"CNPJ {', '.join(sorted(named))}" if named else "no CNPJ"),
        )


@dataclass(frozen=True, slots=True)
class Certificate:
    """A prestador's loaded A1 certificate: the private key, its certificate and the chain."""

    key: rsa.RSAPrivateKey = field(repr=False)
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def subject_cn(self) -> str:
        attrs = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = attrs[0].value if attrs else ""
        return value.decode() if isinstance(value, bytes) else value

    @property
    def not_valid_after(self) -> datetime:
        return self.cert.not_valid_after_utc

    def is_valid_at(self, moment: datetime) -> bool:
        return self.cert.not_valid_before_utc <= moment <= self.cert.not_valid_after_utc


class CertificateStore(Protocol):
    def get(self, cnpj: str) -> Certificate:
        """The loaded certificate of `cnpj`; CertificateNotFound / CertificateInvalid."""
        ...


def load_pkcs12(cnpj: str, pfx: bytes, password: bytes) -> Certificate:
    """Decrypt a PKCS#12 blob; errors name the CNPJ only."""
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(pfx, password)
    except ValueError:
        # Not chained: no traceback printer can reach the inputs through the cause.
        raise CertificateInvalid(
            cnpj, "cannot open the PKCS#12 (wrong password or corrupt)"
        ) from None
    if key is None or cert is None:
        raise CertificateInvalid(cnpj, "the PKCS#12 holds no private key or no certificate")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateInvalid(cnpj, "the certificate key is not RSA")
    return Certificate(key=key, cert=cert, chain=tuple(chain))


class _CachingStore:
    """TTL cache per CNPJ in front of `_fetch` (pfx bytes, password bytes)."""

    def __init__(
        self,
        ttl_seconds: float,
        clock: Callable[[], float],
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must not be negative")
        self._ttl = ttl_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: dict[str, tuple[float, Certificate]] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def _fetch(self, cnpj: str) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def get(self, cnpj: str) -> Certificate:
        """The usable certificate of `cnpj`: checked for its validity period and its CNPJ at
        every use (a cached one may expire meanwhile)."""
        if _CNPJ.fullmatch(cnpj) is None:
            # Also keeps path separators out of file names and secret ids.
            raise CertificateNotFound(cnpj, "not a CNPJ")
        certificate = self._load(cnpj)
        check_usable(cnpj, certificate, self._wall_clock())
        return certificate

    def _load(self, cnpj: str) -> Certificate:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(cnpj)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        pfx, password = self._fetch(cnpj)
        certificate = load_pkcs12(cnpj, pfx, password)
        with self._lock:
            self._cache[cnpj] = (now, certificate)
            self.loads += 1
        return certificate

    def invalidate(self, cnpj: str | None = None) -> None:
        with self._lock:
            if cnpj is None:
                self._cache.clear()
            else:
                self._cache.pop(cnpj, None)


class FileCertificateStore(_CachingStore):
    """Local mode: `{directory}/{cnpj}.pfx` and `{directory}/{cnpj}.password` (UTF-8 text)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(ttl_seconds, clock, wall_clock)
        self.directory = Path(directory)

    def _fetch(self, cnpj: str) -> tuple[bytes, bytes]:
        pfx_path = self.directory / f"{cnpj}.pfx"
        password_path = self.directory / f"{cnpj}.password"
        try:
            pfx = pfx_path.read_bytes()
            password = password_path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError as exc:
            raise CertificateNotFound(cnpj, f"no {Path(exc.filename).name} in the store") from None
        return pfx, password.encode("utf-8")


class SecretsManagerCertificateStore(_CachingStore):
    """AWS: secret `{prefix}/{cnpj}` = JSON {"pfx": base64 PKCS#12, "password": "..."}.

    The boto3 client is injected (tests pass a moto-backed one) or built on first use.
    """

    def __init__(  # noqa: PLR0913 - keyword-only clients and clocks, injectable for tests
        self,
        client: Any | None = None,
        prefix: str = "nfse/certificates",
        *,
        ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        client_factory: Callable[[], Any] | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(ttl_seconds, clock, wall_clock)
        self.prefix = prefix.rstrip("/")
        self._client = client
        self._client_factory = client_factory
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                if self._client_factory is not None:
                    self._client = self._client_factory()
                else:
                    self._client = boto3.client("secretsmanager")
            return self._client

    def secret_id(self, cnpj: str) -> str:
        return f"{self.prefix}/{cnpj}"

    def _fetch(self, cnpj: str) -> tuple[bytes, bytes]:
        client = self.client
        try:
            answer = client.get_secret_value(SecretId=self.secret_id(cnpj))
        except client.exceptions.ResourceNotFoundException:
            raise CertificateNotFound(cnpj, f"no secret {self.secret_id(cnpj)}") from None
        try:
            payload = json.loads(answer["SecretString"])
            pfx = base64.b64decode(payload["pfx"], validate=True)
            password = payload["password"]
            if not isinstance(password, str):
                raise TypeError
        except (KeyError, TypeError, ValueError, binascii.Error):
            # No detail from the parser: it could quote the secret.
            raise CertificateInvalid(
                cnpj, f'secret {self.secret_id(cnpj)} is not {{"pfx": base64, "password": str}}'
            ) from None
        return pfx, password.encode("utf-8")
