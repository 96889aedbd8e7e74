"""Throwaway A1 (PKCS#12) certificates for tests and the local stack; never for production.

ICP-Brasil e-CNPJ certificates name the company as "RAZAO SOCIAL:CNPJ" in the subject CN;
these self-signed ones do the same so the simulator can match the signer to the prestador.
Nothing generated here is written to the repository: callers choose a temporary directory.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from cryptography.x509.oid import NameOID

ICP_BRASIL_CNPJ_OID = x509.ObjectIdentifier("2.16.76.1.3.3")
_CNPJ = re.compile(r"[0-9A-Z]{12}[0-9]{2}")


def generate_key_and_certificate(
    cnpj: str,
    *,
    razao_social: str = "EMPRESA",
    valid_days: int = 365,
    key_size: int = 2048,
    not_before: datetime | None = None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A new RSA key and a self-signed certificate naming the CNPJ as ICP-Brasil e-CNPJ
    certificates do: subject CN "{razao_social}:{cnpj}" and the otherName 2.16.76.1.3.3."""
    if _CNPJ.fullmatch(cnpj) is None:
        raise ValueError(f"not a CNPJ: {cnpj!r}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ICP-Brasil (simulado)"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{razao_social}:{cnpj}"),
        ]
    )
    cert = (
        _self_signed(key, name, not_before, valid_days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # The CNPJ as ICP-Brasil e-CNPJ certificates carry it (DOC-ICP-04): an otherName
            # 2.16.76.1.3.3 whose value is the 14 characters (DER OCTET STRING here).
            x509.SubjectAlternativeName(
                [x509.OtherName(ICP_BRASIL_CNPJ_OID, bytes([0x04, len(cnpj)]) + cnpj.encode())]
            ),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _self_signed(
    key: rsa.RSAPrivateKey, name: x509.Name, not_before: datetime | None, valid_days: int
) -> x509.CertificateBuilder:
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=valid_days))
    )


def generate_a1_certificate(
    cnpj: str, password: str | bytes, *, razao_social: str = "EMPRESA", valid_days: int = 365
) -> bytes:
    """A password-protected PKCS#12 (.pfx) holding a new key and its self-signed certificate."""
    key, cert = generate_key_and_certificate(cnpj, razao_social=razao_social, valid_days=valid_days)
    return to_pfx(key, cert, password, friendly_name=f"{razao_social}:{cnpj}")


def to_pfx(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    password: str | bytes,
    *,
    friendly_name: str | None = None,
    chain: list[x509.Certificate] | None = None,
) -> bytes:
    secret = password.encode() if isinstance(password, str) else password
    if not secret:
        raise ValueError("an A1 certificate needs a password")
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode() if friendly_name else None,
        key,
        cert,
        chain,
        BestAvailableEncryption(secret),
    )


def write_a1_certificate(directory: Path, cnpj: str, password: str) -> Path:
    """Write {cnpj}.pfx and {cnpj}.password (FileCertificateStore's layout); the .pfx path."""
    directory.mkdir(parents=True, exist_ok=True)
    pfx_path = directory / f"{cnpj}.pfx"
    pfx_path.write_bytes(generate_a1_certificate(cnpj, password))
    password_path = directory / f"{cnpj}.password"
    password_path.write_text(password, encoding="utf-8")
    pfx_path.chmod(0o600)
    password_path.chmod(0o600)
    return pfx_path


def generate_server_certificate(
    host: str = "127.0.0.1", *, valid_days: int = 30
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A throwaway self-signed TLS server certificate for `host` (an IP address or a DNS name)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt_name = x509.DNSName(host)
    cert = (
        _self_signed(key, name, None, valid_days)
        .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def mutual_tls_server_context(
    key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    trusted_clients: list[x509.Certificate],
    directory: Path,
) -> ssl.SSLContext:
    """A server context (for the simulator) that demands a client certificate it trusts.

    `directory` receives the server's PEM files (ssl loads keys from files only): a test's
    temporary directory.
    """
    cert_file, key_file = directory / "server-cert.pem", directory / "server-key.pem"
    cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_file.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(
        cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in trusted_clients)
    )
    return context
