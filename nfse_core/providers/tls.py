"""TLS client authentication with the prestador's A1 certificate, for providers that require it.

Many Brazilian web services authenticate the connection itself with the company's ICP-Brasil
certificate (mutual TLS), besides the XMLDSig signature. OpenSSL loads a client key only from
a file: it is written encrypted under a one-time random password into a private temporary
directory, loaded, and the directory removed at once. The key never touches disk in clear
and lives on only inside the SSL context.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from nfse_core.providers.certificates import Certificate
from nfse_core.providers.deadline import DeadlineAdapter


def client_tls_context(certificate: Certificate, ca_bundle: str | None = None) -> ssl.SSLContext:
    """A client SSL context presenting `certificate`, verifying servers against `ca_bundle`.

    Without a bundle, servers are verified against the roots requests uses (certifi); a
    provider whose server certificate chains to ICP-Brasil needs the bundle that holds it.
    """
    context = ssl.create_default_context(cafile=ca_bundle or DEFAULT_CA_BUNDLE_PATH)
    password = secrets.token_bytes(32)
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in (certificate.cert, *certificate.chain))
    key = certificate.key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password)
    )
    with tempfile.TemporaryDirectory(prefix="nfse-tls-") as directory:
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        for path, data in ((cert_file, chain), (key_file, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(cert_file, key_file, password=password)
    return context


class ClientCertificateAdapter(DeadlineAdapter):
    """A requests adapter whose connections all use one SSL context (client certificate) and
    obey the call deadline."""

    def __init__(self, context: ssl.SSLContext, **kwargs: Any) -> None:
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
