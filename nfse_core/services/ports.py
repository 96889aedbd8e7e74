"""The ports of the services: what each use case needs from the world, declared once.

The invoices port comes in roles, one per use case, so that a store or a fake implements what
its service uses: `NewInvoices` (emit), `LeasedInvoices` (issue), `PendingInvoices` (sweep).
nfse_core.store.invoices.InvoiceRepository plays all three. The provider port is the
plug-in interface, nfse_core.providers.plugin.ProviderAdapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.store.invoices import FailGuard

if TYPE_CHECKING:  # the ledger's executors are not needed to emit
    from nfse_core.domain.errors import NfseError
    from nfse_core.providers.registry import Environment
    from nfse_core.store.ledger import LedgerRow
    from nfse_core.xml.forms import DocumentForm


class InvoiceLookup(Protocol):
    def get(self, invoice_id: str, *, consistent: bool = True) -> InvoiceRecord | None: ...


class InvoiceFailing(Protocol):
    def mark_failed(
        self,
        invoice_id: str,
        *,
        processed_at: datetime,
        error: FailureReason,
        guard: FailGuard,
        ledger_follows: bool = True,
    ) -> bool: ...


class NewInvoices(InvoiceLookup, InvoiceFailing, Protocol):
    """The invoices as EmitService sees them."""

    def put_emitted(self, record: InvoiceRecord) -> bool: ...


class LeasedInvoices(InvoiceLookup, InvoiceFailing, Protocol):
    """The invoices as IssueService sees them: taken under a send lease, then settled."""

    def mark_processing(
        self,
        invoice_id: str,
        *,
        now: datetime,
        lease_until: datetime,
        owner: str,
        last_chance: bool = False,
    ) -> InvoiceRecord | None: ...
    def release_lease(self, invoice_id: str, owner: str, *, now: datetime) -> None: ...
    def set_signed_key(self, invoice_id: str, key: str) -> None: ...
    def mark_issued(  # noqa: PLR0913 - keyword-only: the fields of the provider's answer
        self,
        invoice_id: str,
        *,
        processed_at: datetime,
        provider_protocol: str | None,
        nfse_number: str,
        verification_code: str | None,
        signed_key: str | None,
        nfse_key: str | None,
        access_key: str | None = None,
    ) -> bool: ...


class PendingInvoices(InvoiceLookup, InvoiceFailing, Protocol):
    """The invoices as the Sweeper sees them: the ones not yet final or not yet in the ledger."""

    def pending_before(self, shard: int, cutoff: datetime) -> Iterator[str]: ...
    def note_redrive(self, invoice_id: str, *, now: datetime) -> bool: ...
    def clear_pending(self, invoice_id: str) -> None: ...


class Counter(Protocol):
    """The RPS numbers of a prestador and serie, each handed out once."""

    def next(self, cnpj: str, serie: str) -> int: ...


class Tenants(Protocol):
    def cnpjs_of(self, tenant_id: str) -> frozenset[str]: ...


class Standards(Protocol):
    """Which standard's document a municipality's invoice is (the provider registry in use:
    nfse_core.providers.registry.ProviderRegistry, or the deployed one kept up to date)."""

    def standard_of(self, municipio: str) -> str: ...

    def form_of(self, municipio: str) -> DocumentForm | None:
        """The document form of the municipality's provider family (an ABRASF version,
        namespace and value formats), None for the standard's own."""
        ...

    def refusal(self, municipio: str) -> NfseError | None:
        """Why no invoice can be issued in the municipality (no provider for it), or None."""
        ...

    @property
    def environment(self) -> Environment:
        """producao or homologacao: a document may say which (NFS-e Nacional's tpAmb)."""
        ...


class DocumentWriter(Protocol):
    def put_xml(self, key: str, body: bytes) -> None: ...


class Documents(DocumentWriter, Protocol):
    """Only keys known to exist are read: the item says which (xmlKey, signedKey). Asking S3
    whether a key exists would need s3:ListBucket (without it a missing key is a 403)."""

    def read(self, key: str) -> bytes: ...


class DocumentPresence(Protocol):
    """Whether a document exists; only for a role that may list the bucket (the sweeper)."""

    def exists(self, key: str) -> bool: ...


class Orchestrator(Protocol):
    """Starts the processing of an accepted invoice."""

    def start(self, invoice_id: str, payload: dict[str, Any], *, name: str) -> str: ...


class Queue(Protocol):
    """The requests queue, for invoices the sweeper hands back to the worker."""

    def send(self, body: dict[str, Any]) -> None: ...


class Signer(Protocol):
    """Signs the RPS with the prestador's certificate, as the municipality's provider wants."""

    def __call__(self, cnpj: str, municipio: str, document: bytes) -> bytes: ...


class LedgerWriter(Protocol):
    """Records where an invoice stands in the ledger; True when the row changed."""

    def upsert(self, row: LedgerRow) -> bool: ...


class Parking(Protocol):
    """Keeps a message no run could ever handle, with the reason; returns where."""

    def park(self, message_id: str, body: str, reason: str) -> str: ...
