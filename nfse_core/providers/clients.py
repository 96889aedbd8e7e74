"""The provider adapters of a process: one per endpoint, or per endpoint and company (mTLS)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from cryptography.hazmat.primitives import hashes

from nfse_core.providers.certificates import CertificateNotFound, CertificateStore
from nfse_core.providers.deadline import DeadlineAdapter, provider_session
from nfse_core.providers.plugin import ProviderAdapter, RequestSigner, connect
from nfse_core.providers.registry import Registry, ResolvedProvider
from nfse_core.providers.tls import ClientCertificateAdapter, client_tls_context

log = logging.getLogger(__name__)


class ProviderClients:
    """One adapter per endpoint (its standard's plug-in), sharing a connection pool sized for
    the worker's threads.

    A provider that authenticates the connection with the prestador's certificate (mutual TLS,
    `client_certificate` in the registry) gets one adapter per endpoint and company instead,
    with its own SSL context; a renewed certificate (a new one from the store) gets a new one.
    """

    def __init__(
        self,
        registry: Registry,
        pool_size: int,
        certificates: CertificateStore | None = None,
        ca_bundle: str = "",
        sign: RequestSigner | None = None,
    ) -> None:
        """`sign` signs the requests a provider wants signed beyond the stored document (the
        consult of some ABRASF families): the worker's RpsSigner."""
        self._registry = registry
        self._sign = sign
        self._pool_size = max(10, pool_size)
        self._certificates = certificates
        self._ca_bundle = ca_bundle
        self._session = provider_session(
            DeadlineAdapter(**self._adapter_options()), ca_bundle=self._ca_bundle or ""
        )
        self._clients: dict[str, ProviderAdapter] = {}
        self._per_company: dict[tuple[str, str], tuple[bytes, ProviderAdapter]] = {}
        self._lock = threading.Lock()

    def _adapter_options(self) -> dict[str, Any]:
        # No transport retries: a POST that reached the provider is never re-sent blindly.
        return {"max_retries": 0, "pool_connections": 8, "pool_maxsize": self._pool_size}

    def __call__(self, municipio: str, cnpj: str) -> ProviderAdapter:
        """The adapter of a municipality's provider, acting for the prestador `cnpj`.

        Raises ProviderNotConfigured (a LookupError) for an unknown municipality, and a
        CertificateError when the provider needs the company's certificate and it is missing.
        """
        resolved = self._registry.resolve(municipio)
        if resolved.config.client_certificate:
            return self._client_with_certificate(resolved, cnpj)
        with self._lock:
            client = self._clients.get(resolved.endpoint)
            if client is None:
                client = connect(resolved, self._session, self._sign)
                self._clients[resolved.endpoint] = client
            return client

    def _client_with_certificate(self, resolved: ResolvedProvider, cnpj: str) -> ProviderAdapter:
        if self._certificates is None:
            raise CertificateNotFound(cnpj, "this provider requires a client certificate")
        certificate = self._certificates.get(cnpj)  # cached by the store for its TTL
        fingerprint = certificate.cert.fingerprint(hashes.SHA256())
        key = (resolved.endpoint, cnpj)
        with self._lock:
            known = self._per_company.get(key)
            if known is not None and known[0] == fingerprint:
                return known[1]
            context = client_tls_context(certificate, self._ca_bundle or None)
            adapter = ClientCertificateAdapter(context, **self._adapter_options())
            session = provider_session(adapter, ca_bundle=self._ca_bundle or "")
            client = connect(resolved, session, self._sign)
            self._per_company[key] = (fingerprint, client)
        if known is not None:
            # A renewed certificate. The old session is left to finish the calls it carries;
            # renewals come once a year or so per company.
            log.info("provider client renewed with a new certificate", extra={"cnpj": cnpj})
        return client
