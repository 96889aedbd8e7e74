"""Builds the issuance use case from settings: the one place adapters are chosen and connected.

The worker and ProcessorFn both call build_issuance(); tests hand in their own clients.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from nfse_core.config import IssuanceSettings, SweeperSettings
from nfse_core.domain.invoice import utc_now
from nfse_core.providers.abrasf import AbrasfSoapClient
from nfse_core.providers.certificates import (
    CertificateNotFound,
    CertificateStore,
    FileCertificateStore,
    SecretsManagerCertificateStore,
)
from nfse_core.providers.deadline import DeadlineAdapter, provider_session
from nfse_core.providers.registry import ProviderRegistry, Registry, ResolvedProvider
from nfse_core.providers.registry_source import LiveRegistry, S3RegistryObject
from nfse_core.providers.tls import ClientCertificateAdapter, client_tls_context
from nfse_core.services.issue import IssueService, RetryPolicy, lease_seconds
from nfse_core.services.sweep import SqsQueue, Sweeper, SweepPolicy
from nfse_core.store.aws import AwsClients
from nfse_core.store.documents import DocumentStore
from nfse_core.store.invoices import InvoiceRepository
from nfse_core.store.ledger import Ledger
from nfse_core.store.sql_executors import executor_from_settings
from nfse_core.xml.safe import parse_untrusted
from nfse_core.xml.signing import SignerCache

log = logging.getLogger(__name__)


class ProviderClients:
    """One SOAP client per endpoint, sharing a connection pool sized for the worker's threads.

    A provider that authenticates the connection with the prestador's certificate (mutual TLS,
    `client_certificate` in the registry) gets one client per endpoint and company instead,
    with its own SSL context; a renewed certificate (a new one from the store) gets a new one.
    """

    def __init__(
        self,
        registry: Registry,
        pool_size: int,
        certificates: CertificateStore | None = None,
        ca_bundle: str = "",
    ) -> None:
        self._registry = registry
        self._pool_size = max(10, pool_size)
        self._certificates = certificates
        self._ca_bundle = ca_bundle
        self._session = provider_session(
            DeadlineAdapter(**self._adapter_options()), ca_bundle=self._ca_bundle or ""
        )
        self._clients: dict[str, AbrasfSoapClient] = {}
        self._per_company: dict[tuple[str, str], tuple[bytes, AbrasfSoapClient]] = {}
        self._lock = threading.Lock()

    def _adapter_options(self) -> dict[str, Any]:
        # No transport retries: a POST that reached the provider is never re-sent blindly.
        return {"max_retries": 0, "pool_connections": 8, "pool_maxsize": self._pool_size}

    def __call__(self, municipio: str, cnpj: str) -> AbrasfSoapClient:
        """The client for a municipality's provider, acting for the prestador `cnpj`.

        Raises ProviderNotConfigured (a LookupError) for an unknown municipality, and a
        CertificateError when the provider needs the company's certificate and it is missing.
        """
        resolved = self._registry.resolve(municipio)
        if resolved.config.client_certificate:
            return self._client_with_certificate(resolved, cnpj)
        with self._lock:
            client = self._clients.get(resolved.endpoint)
            if client is None:
                client = AbrasfSoapClient.for_provider(resolved, session=self._session)
                self._clients[resolved.endpoint] = client
            return client

    def _client_with_certificate(self, resolved: ResolvedProvider, cnpj: str) -> AbrasfSoapClient:
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
            client = AbrasfSoapClient.for_provider(
                resolved, session=provider_session(adapter, ca_bundle=self._ca_bundle or "")
            )
            self._per_company[key] = (fingerprint, client)
        if known is not None:
            # A renewed certificate. The old session is left to finish the calls it carries;
            # renewals come once a year or so per company.
            log.info("provider client renewed with a new certificate", extra={"cnpj": cnpj})
        return client


class RpsSigner:
    """Signs with the prestador's A1 certificate and the algorithm its municipality requires."""

    def __init__(self, registry: Registry, certificates: CertificateStore) -> None:
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
    documents: DocumentStore
    # The longest one invoice can hold its caller: the send lease of the slowest provider.
    max_lease_seconds: float
    # The providers in use (the deployed overlay is re-read: ask it, do not copy its numbers).
    registry: Registry


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
    registry = provider_registry(settings, aws)
    invoices = InvoiceRepository(aws.dynamodb, settings.invoices_table)
    rds_data = aws.rds_data if settings.cluster_arn else None
    ledger = Ledger(executor_from_settings(settings, client=rds_data))
    certificates = certificate_store(settings, aws)
    documents = DocumentStore(aws.s3, settings.docs_bucket, settings.docs_kms_key_id)
    retry = retry or RetryPolicy()
    service = IssueService(
        invoices=invoices,
        documents=documents,
        signer=RpsSigner(registry, certificates),
        provider_for=ProviderClients(
            registry, pool_size, certificates, ca_bundle=settings.provider_ca_bundle
        ),
        ledger=ledger,
        clock=clock,
        retry=retry,
    )
    # Plus the wait for a last send to settle (ProcessorFn's last chance).
    max_lease = lease_seconds(retry, registry.longest_call_seconds()) + registry.longest_settle()
    return Issuance(service, invoices, ledger, documents, max_lease, registry)


def provider_registry(settings: IssuanceSettings, clients: AwsClients) -> Registry:
    """The shipped registry, with the deployment's overlay from the documents bucket over it
    when PROVIDERS_OBJECT_KEY names one. The local simulator override answers for every
    municipality, so no overlay is read then."""
    if settings.provider_endpoint_override or not settings.providers_object_key:
        return ProviderRegistry.default(
            environment=settings.provider_environment,
            endpoint_override=settings.provider_endpoint_override or None,
        )
    return LiveRegistry(
        S3RegistryObject(clients.s3, settings.docs_bucket, settings.providers_object_key),
        environment=settings.provider_environment,
        ttl_seconds=settings.providers_cache_seconds,
    )


def build_sweeper(
    settings: SweeperSettings,
    clients: AwsClients | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> Sweeper:
    aws = clients or AwsClients()
    rds_data = aws.rds_data if settings.cluster_arn else None
    return Sweeper(
        invoices=InvoiceRepository(aws.dynamodb, settings.invoices_table),
        documents=DocumentStore(aws.s3, settings.docs_bucket),
        queue=SqsQueue(aws.sqs, settings.requests_queue_url),
        ledger=Ledger(executor_from_settings(settings, client=rds_data)),
        clock=clock,
        policy=SweepPolicy(
            redrive_after=timedelta(seconds=settings.redrive_after_seconds),
            live_window=timedelta(seconds=settings.live_window_seconds),
            stuck_after=timedelta(seconds=settings.stuck_after_seconds),
        ),
    )
