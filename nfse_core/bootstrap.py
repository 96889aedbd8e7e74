"""The composition root: each use case built from its settings, with its adapters chosen here.

Handlers and the worker call one `build_*` once per process; tests hand in their own clients
(and clock). Every `build_*` imports its adapters when called, so that a function loads only
what it runs: GetFn, which asks for `build_queries` alone, never imports the emit or issuance
modules (its cold start). A handler that builds on its first event calls `preload` at import
with the modules of its `build_*` (`EMIT_MODULES`, `ISSUANCE_MODULES`, `SWEEPER_MODULES`), so
that Lambda's init phase, not the first event, pays for importing them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from nfse_core.domain.invoice import utc_now
from nfse_core.services.queries import InvoiceQueries
from nfse_core.store.aws import AwsClients
from nfse_core.store.invoices import InvoiceRepository

if TYPE_CHECKING:
    from nfse_core.config import (
        ApiSettings,
        IssuanceSettings,
        LedgerSettings,
        ProcessorSettings,
        QuerySettings,
        SweeperSettings,
        WorkerSettings,
    )
    from nfse_core.providers.certificates import CertificateStore
    from nfse_core.providers.registry import Environment, ProviderRegistry, Registry
    from nfse_core.providers.registry_source import LiveRegistry
    from nfse_core.services.api import EmitApi
    from nfse_core.services.issue import DeliveryRetry, IssueService
    from nfse_core.services.reprocess import DlqReprocessor
    from nfse_core.services.sweep import Sweeper
    from nfse_core.store.documents import DocumentStore
    from nfse_core.store.ledger import Ledger


# The modules build_emit imports, and the default standard's plug-in its first emit loads.
EMIT_MODULES = (
    "nfse_core.store.control",
    "nfse_core.store.documents",
    "nfse_core.store.orchestrator",
    "nfse_core.providers.registry",
    "nfse_core.providers.registry_source",
    "nfse_core.providers.abrasf_2",  # the plug-in of plugin.DEFAULT_STANDARD (ABRASF 2.x)
)
# The modules build_issuance and build_reprocessor import.
ISSUANCE_MODULES = (
    "nfse_core.providers.abrasf",
    "nfse_core.providers.abrasf_2",  # the plug-in of plugin.DEFAULT_STANDARD (ABRASF 2.x)
    "nfse_core.providers.certificates",
    "nfse_core.providers.clients",
    "nfse_core.providers.registry",
    "nfse_core.providers.registry_source",
    "nfse_core.providers.signer",
    "nfse_core.services.issue",
    "nfse_core.services.reprocess",
    "nfse_core.store.documents",
    "nfse_core.store.ledger",
    "nfse_core.store.sql_executors",
)
# The modules build_sweeper imports.
SWEEPER_MODULES = (
    "nfse_core.services.sweep",
    "nfse_core.store.documents",
    "nfse_core.store.ledger",
    "nfse_core.store.sql_executors",
)


def preload(modules: Iterable[str]) -> None:
    """Imports `modules` now (a handler's init phase) rather than at its first build."""
    for name in modules:
        importlib.import_module(name)


def build_queries(settings: QuerySettings, clients: AwsClients | None = None) -> InvoiceQueries:
    """GetFn's read side."""
    aws = clients or AwsClients()
    return InvoiceQueries(InvoiceRepository(aws.dynamodb, settings.invoices_table))


def build_emit(
    settings: ApiSettings,
    clients: AwsClients | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> EmitApi:
    """EmitFn's use case: validate, number, build and store the RPS, start its issuance. The
    RPS is the document of the standard the deployed registry picks for the municipality
    (`deployed_registry`: the one the worker resolves the provider from)."""
    # Imported here: only EmitFn loads the emit side.
    from nfse_core.domain.ids import new_invoice_id
    from nfse_core.services.api import EmitApi
    from nfse_core.services.emit import EmitService
    from nfse_core.services.idempotent import IdempotentEmitter
    from nfse_core.store.control import RpsCounter, TenantDirectory
    from nfse_core.store.documents import DocumentStore
    from nfse_core.store.orchestrator import StepFunctionsOrchestrator

    aws = clients or AwsClients()
    invoices = InvoiceRepository(aws.dynamodb, settings.invoices_table)
    service = EmitService(
        invoices=invoices,
        counter=RpsCounter(aws.dynamodb, settings.rps_counters_table),
        tenants=TenantDirectory(aws.dynamodb, settings.tenants_table),
        standards=deployed_registry(
            settings,
            aws,
            environment=settings.provider_environment,
            endpoint_override=settings.provider_endpoint_override or None,
        ),
        documents=DocumentStore(aws.s3, settings.docs_bucket, settings.docs_kms_key_id),
        orchestrator=StepFunctionsOrchestrator(aws.stepfunctions, settings.state_machine_arn),
        clock=clock,
        new_id=new_invoice_id,
        serie=settings.rps_serie,
    )
    idempotency = IdempotentEmitter(
        client=aws.dynamodb,
        table=settings.idempotency_table,
        ttl_seconds=settings.idempotency_ttl_seconds,
    )
    return EmitApi(settings, invoices, service, idempotency)


@dataclass(frozen=True, slots=True)
class Issuance:
    """The issuance use case and the stores it was built on."""

    service: IssueService
    invoices: InvoiceRepository
    ledger: Ledger
    documents: DocumentStore
    # The longest one invoice can hold its caller: the send lease of the slowest provider.
    max_lease_seconds: float
    # The providers in use (the deployed overlay is re-read: ask it, do not copy its numbers).
    registry: Registry


def build_issuance(
    settings: IssuanceSettings,
    clients: AwsClients | None = None,
    *,
    pool_size: int = 16,
    retry: DeliveryRetry | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Issuance:
    """The issuance use case (the worker's and ProcessorFn's): sign, send, consult, record."""
    # Imported here: the provider, signing and ledger modules are the issuance side's alone.
    from nfse_core.providers.clients import ProviderClients
    from nfse_core.providers.signer import RpsSigner
    from nfse_core.services.issue import DeliveryRetry, IssueService, lease_seconds
    from nfse_core.store.documents import DocumentStore

    aws = clients or AwsClients()
    registry = provider_registry(settings, aws)
    invoices = InvoiceRepository(aws.dynamodb, settings.invoices_table)
    ledger = ledger_of(settings, aws)
    certificates = certificate_store(settings, aws)
    documents = DocumentStore(aws.s3, settings.docs_bucket, settings.docs_kms_key_id)
    retry = retry or DeliveryRetry()
    signer = RpsSigner(registry, certificates)
    service = IssueService(
        invoices=invoices,
        documents=documents,
        signer=signer,
        provider_for=ProviderClients(
            registry, pool_size, certificates, ca_bundle=settings.provider_ca_bundle, sign=signer
        ),
        ledger=ledger,
        clock=clock,
        retry=retry,
    )
    # Plus the wait for a last send to settle (ProcessorFn's last chance).
    max_lease = lease_seconds(retry, registry.longest_call_seconds()) + registry.longest_settle()
    return Issuance(service, invoices, ledger, documents, max_lease, registry)


def worker_clients(concurrency: int, wait_seconds: int = 20) -> AwsClients:
    """Clients with a connection per thread: the pool's threads, the polling thread and the
    visibility heartbeat share each client (botocore's 10 would mean a new TCP connection per
    call above 10 threads); the SQS client waits out the long poll."""
    return AwsClients(max_pool_connections=max(10, concurrency + 2), long_poll_seconds=wait_seconds)


def build_worker_issuance(settings: WorkerSettings, clients: AwsClients) -> Issuance:
    """The worker's issuance: a client connection and a provider connection per thread, and
    in-delivery retries that stop at a third of the visibility window."""
    from nfse_core.services.issue import DeliveryRetry

    retry = DeliveryRetry(
        attempts=settings.attempts_per_delivery, budget_seconds=settings.visibility_timeout / 3
    )
    return build_issuance(settings, clients, pool_size=settings.concurrency, retry=retry)


def build_reprocessor(
    settings: ProcessorSettings, clients: AwsClients | None = None
) -> DlqReprocessor:
    """ProcessorFn's DLQ run: the issuance use case with the last-chance retry policy."""
    from nfse_core.services.reprocess import (
        LAST_CHANCE_RETRY,
        DlqReprocessor,
        S3Parking,
        dlq_message_seconds,
    )

    aws = clients or AwsClients()
    issuance = build_issuance(settings, aws, pool_size=4, retry=LAST_CHANCE_RETRY)
    registry = issuance.registry

    def per_message_seconds() -> float:
        # Asked at each run: the deployed registry may have gained a slower provider.
        return dlq_message_seconds(
            LAST_CHANCE_RETRY, registry.longest_call_seconds(), registry.longest_settle()
        )

    return DlqReprocessor(
        sqs=aws.sqs,
        dlq_url=settings.dlq_url,
        service=issuance.service,
        parking=S3Parking(issuance.documents, utc_now),
        per_message_seconds=per_message_seconds,
        hold_seconds=settings.hold_seconds,
    )


def build_sweeper(
    settings: SweeperSettings,
    clients: AwsClients | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> Sweeper:
    """SweeperFn's run: re-drive stuck invoices, write the ledger rows nobody else wrote."""
    from nfse_core.services.sweep import SqsQueue, Sweeper, SweepPolicy
    from nfse_core.store.documents import DocumentStore

    aws = clients or AwsClients()
    return Sweeper(
        invoices=InvoiceRepository(aws.dynamodb, settings.invoices_table),
        documents=DocumentStore(aws.s3, settings.docs_bucket),
        queue=SqsQueue(aws.sqs, settings.requests_queue_url),
        ledger=ledger_of(settings, aws),
        clock=clock,
        policy=SweepPolicy(
            redrive_after=timedelta(seconds=settings.redrive_after_seconds),
            live_window=timedelta(seconds=settings.live_window_seconds),
            stuck_after=timedelta(seconds=settings.stuck_after_seconds),
        ),
    )


def ledger_of(settings: LedgerSettings, clients: AwsClients) -> Ledger:
    """The PostgreSQL ledger: Aurora through the Data API when DB_CLUSTER_ARN is set, else the
    DATABASE_URL connection (local stack, tests)."""
    from nfse_core.store.ledger import Ledger
    from nfse_core.store.sql_executors import executor_from_settings

    rds_data = clients.rds_data if settings.cluster_arn else None
    return Ledger(executor_from_settings(settings, client=rds_data))


def provider_registry(settings: IssuanceSettings, clients: AwsClients) -> Registry:
    """The issuance's registry: the deployed one (`deployed_registry`) in the settings'
    environment. In local mode (PROVIDER_ENDPOINT_OVERRIDE) each standard's simulator answers
    for the municipalities the registry maps to that standard."""
    return deployed_registry(
        settings,
        clients,
        environment=settings.provider_environment,
        endpoint_override=settings.provider_endpoint_override or None,
    )


def deployed_registry(
    settings: ApiSettings | IssuanceSettings,
    clients: AwsClients,
    *,
    environment: Environment = "homologacao",
    endpoint_override: str | None = None,
) -> ProviderRegistry | LiveRegistry:
    """The shipped registry, with the deployment's overlay from the documents bucket over it
    when PROVIDERS_OBJECT_KEY names one: read again after PROVIDERS_CACHE_SECONDS; no object
    means the shipped data alone; an object that cannot be read or does not validate is
    logged as refused (the ProviderRegistryRefused alarm) and the last good registry stays."""
    from nfse_core.providers.registry import ProviderRegistry
    from nfse_core.providers.registry_source import LiveRegistry, S3RegistryObject

    if not settings.providers_object_key:
        return ProviderRegistry.default(
            environment=environment, endpoint_override=endpoint_override
        )
    return LiveRegistry(
        S3RegistryObject(clients.s3, settings.docs_bucket, settings.providers_object_key),
        environment=environment,
        ttl_seconds=settings.providers_cache_seconds,
        endpoint_override=endpoint_override,
    )


def certificate_store(settings: IssuanceSettings, clients: AwsClients) -> CertificateStore:
    """Where the prestadores' A1 certificates are read: a directory locally, Secrets Manager
    in AWS; each cached for CERT_CACHE_SECONDS."""
    from nfse_core.providers.certificates import (
        FileCertificateStore,
        SecretsManagerCertificateStore,
    )

    ttl = settings.cert_cache_seconds
    if settings.cert_source == "file":
        return FileCertificateStore(Path(settings.cert_dir), ttl_seconds=ttl)
    return SecretsManagerCertificateStore(
        prefix=settings.cert_secret_prefix,
        client_factory=lambda: clients.secretsmanager,
        ttl_seconds=ttl,
    )
