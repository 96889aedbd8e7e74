"""Builds the issuance use case from settings: the one place adapters are chosen and connected.

The worker and ProcessorFn both call build_issuance(); tests hand in their own clients.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from nfse_core.config import IssuanceSettings
from nfse_core.providers.abrasf import AbrasfSoapClient
from nfse_core.providers.certificates import (
    CertificateStore,
    FileCertificateStore,
    SecretsManagerCertificateStore,
)
from nfse_core.providers.registry import ProviderRegistry
from nfse_core.services.issue import IssueService, RetryPolicy
from nfse_core.store.aws import AwsClients
from nfse_core.store.documents import DocumentStore
from nfse_core.store.invoices import InvoiceRepository, utc_now
from nfse_core.store.ledger import Ledger
from nfse_core.store.sql_executors import executor_from_settings
from nfse_core.xml.safe import parse_untrusted
from nfse_core.xml.signing import SignerCache


class ProviderClients:
    """One SOAP client per endpoint, sharing a connection pool sized for the worker's threads."""

    def __init__(self, registry: ProviderRegistry, pool_size: int) -> None:
        self._registry = registry
        self._session = requests.Session()
        # No transport retries: a POST that reached the provider is never re-sent blindly.
        adapter = HTTPAdapter(max_retries=0, pool_connections=8, pool_maxsize=max(10, pool_size))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._clients: dict[str, AbrasfSoapClient] = {}
        self._lock = threading.Lock()

    def __call__(self, municipio: str) -> AbrasfSoapClient:
        resolved = self._registry.resolve(municipio)  # ProviderNotConfigured is a LookupError
        with self._lock:
            client = self._clients.get(resolved.endpoint)
            if client is None:
                client = AbrasfSoapClient.for_provider(resolved, session=self._session)
                self._clients[resolved.endpoint] = client
            return client


class RpsSigner:
    """Signs with the prestador's A1 certificate and the algorithm its municipality requires."""

    def __init__(self, registry: ProviderRegistry, certificates: CertificateStore) -> None:
        self._registry = registry
        self._certificates = certificates
        self._signers = SignerCache()

    def __call__(self, cnpj: str, municipio: str, document: bytes) -> bytes:
        config = self._registry.resolve(municipio).config
        certificate = self._certificates.get(cnpj)
        signer = self._signers.get(
            cnpj,
            certificate.key,
            certificate.cert,
            certificate.chain,
            signature_algorithm=config.signature_algorithm,
            digest_algorithm=config.digest_algorithm,
        )
        return signer.sign_bytes(parse_untrusted(document))


@dataclass(frozen=True, slots=True)
class Issuance:
    service: IssueService
    invoices: InvoiceRepository
    ledger: Ledger


def certificate_store(settings: IssuanceSettings, clients: AwsClients) -> CertificateStore:
    ttl = settings.cert_cache_seconds
    if settings.cert_source == "file":
        return FileCertificateStore(Path(settings.cert_dir), ttl_seconds=ttl)
    return SecretsManagerCertificateStore(
        prefix=settings.cert_secret_prefix,
        client_factory=lambda: clients.secretsmanager,
        ttl_seconds=ttl,
    )


def build_issuance(
    settings: IssuanceSettings,
    clients: AwsClients | None = None,
    *,
    pool_size: int = 16,
    retry: RetryPolicy | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Issuance:
    aws = clients or AwsClients()
    registry = ProviderRegistry.default(
        environment=settings.provider_environment,
        endpoint_override=settings.provider_endpoint_override or None,
    )
    invoices = InvoiceRepository(aws.dynamodb, settings.invoices_table)
    rds_data = aws.rds_data if settings.cluster_arn else None
    ledger = Ledger(executor_from_settings(settings, client=rds_data))
    service = IssueService(
        invoices=invoices,
        documents=DocumentStore(aws.s3, settings.docs_bucket, settings.docs_kms_key_id),
        signer=RpsSigner(registry, certificate_store(settings, aws)),
        provider_for=ProviderClients(registry, pool_size),
        ledger=ledger,
        clock=clock,
        retry=retry,
    )
    return Issuance(service, invoices, ledger)
