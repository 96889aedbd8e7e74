"""Issue use case: one queued invoice is signed, sent to its municipality once, and recorded.

Shared by the adapter worker (queue) and ProcessorFn (DLQ). The rules that keep an NFS-e from
being issued twice live here:
- the signed document is stored before the first send, and re-used (never re-signed) later;
- after any earlier attempt (a redelivery, a timeout, a stored signed document) the provider is
  consulted by RPS before sending again, and an NFS-e found there is recorded instead;
- an invoice is FAILED only on a definitive answer (a business rejection, or a consult that says
  in the provider's own words that the RPS is not there, once every send has settled), never
  because the provider could not be reached;
- the send lease is exclusive: while one attempt may be talking to the provider, no other
  attempt sends and nobody records FAILED (see InvoiceRepository.mark_processing).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from nfse_core.domain.invoice import FailureReason, InvoiceRecord
from nfse_core.domain.status import FINAL, InvoiceStatus
from nfse_core.providers.certificates import CERTIFICATE_REFUSED_LOG, CertificateError
from nfse_core.providers.plugin import ProviderAdapter
from nfse_core.providers.port import Issued, Rejected, RpsKey, RpsNotFound, TemporaryFailure
from nfse_core.services.ports import Documents, LeasedInvoices, LedgerWriter, Signer
from nfse_core.store.documents import nfse_key, signed_key
from nfse_core.store.invoices import FailGuard
from nfse_core.store.ledger import LedgerRow

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    ISSUED = "ISSUED"
    FAILED = "FAILED"
    RETRY = "RETRY"  # temporary: try again later; nothing definitive is known
    ALREADY_FINAL = "ALREADY_FINAL"  # nothing to do (the ledger is brought up to date)
    DROPPED = "DROPPED"  # the message names no invoice we know


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    invoice_id: str
    detail: str = ""


LEASE_MARGIN = 5.0  # seconds added to the send lease for clock skew between hosts


@dataclass(slots=True)
class _Attempt:
    """One holder's go at an invoice under its send lease."""

    record: InvoiceRecord
    provider: ProviderAdapter
    owner: str
    lease_ends: float  # monotonic
    last_send_end: float | None = None  # monotonic end of this attempt's last send

    @property
    def rps(self) -> RpsKey:
        record = self.record
        return RpsKey(
            cnpj=record.cnpj,
            inscricao_municipal=record.inscricao_municipal,
            numero=record.rps.numero,
            serie=record.rps.serie,
            tipo=record.rps.tipo,
            municipio=record.municipio,
        )


@dataclass(frozen=True, slots=True)
class DeliveryRetry:
    """Quick retries inside one delivery (well within the visibility timeout)."""

    attempts: int = 3
    first_delay: float = 0.5
    factor: float = 2.0
    # No new attempt starts after this many seconds: the message must settle well inside its
    # visibility timeout (if it does not, a second delivery is still safe, only wasteful).
    budget_seconds: float = 40.0


def _certificate_refused(exc: CertificateError) -> FailureReason:
    """The invoice's error for an unusable certificate, logged once for the CertificatesRefused
    metric (the message names the CNPJ and the reason, never the secret)."""
    log.error(CERTIFICATE_REFUSED_LOG, extra={"cnpj": exc.cnpj, "reason": exc.code})
    return FailureReason("CERTIFICATE_UNAVAILABLE", str(exc))


def lease_seconds(retry: DeliveryRetry, max_call_seconds: float) -> float:
    """The send lease: no new attempt starts after the retry budget, a send starts only if it
    can end (its deadline) within the lease, plus a margin for clock skew between hosts."""
    return retry.budget_seconds + 2 * max_call_seconds + LEASE_MARGIN


def invoice_id_of(body: str) -> str | None:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None
    value = data.get("invoiceId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


class IssueService:
    def __init__(  # noqa: PLR0913 - keyword-only: the ports and clocks the service is wired with
        self,
        *,
        invoices: LeasedInvoices,
        documents: Documents,
        signer: Signer,
        provider_for: Callable[[str, str], ProviderAdapter],
        ledger: LedgerWriter,
        clock: Callable[[], datetime],
        retry: DeliveryRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._invoices = invoices
        self._documents = documents
        self._sign = signer
        self._provider_for = provider_for
        self._ledger = ledger
        self._clock = clock
        self._retry = retry or DeliveryRetry()
        self._sleep = sleep
        self._monotonic = monotonic

    def process(self, invoice_id: str, *, redelivered: bool, last_chance: bool = False) -> Result:
        """Drive one invoice as far as it can go now.

        redelivered: SQS says an earlier delivery happened (ApproximateReceiveCount > 1).
        last_chance: the DLQ reprocessor. Its first run for an invoice makes the last sends,
        waits for them to settle, and consults: a "not found" then makes the invoice FAILED.
        Later runs (the first was undecided: the provider could not even be consulted) only
        consult.
        """
        record = self._invoices.get(invoice_id)
        if record is None:
            log.error("message for unknown invoice", extra={"invoice_id": invoice_id})
            return Result(Outcome.DROPPED, invoice_id, "unknown invoice")
        if record.status in FINAL:
            self._ledger.upsert(LedgerRow.of(record))
            return Result(Outcome.ALREADY_FINAL, invoice_id, record.status.value)
        try:
            provider = self._provider_for(record.municipio, record.cnpj)
        except LookupError as exc:  # no provider configured for the municipality: permanent
            return self._fail_unsent(record, FailureReason("MUNICIPALITY_NOT_SUPPORTED", str(exc)))
        except CertificateError as exc:  # the provider authenticates with the certificate
            return self._fail_unsent(record, _certificate_refused(exc))
        attempt = self._take_lease(invoice_id, provider, last_chance=last_chance)
        if isinstance(attempt, Result):
            return attempt
        result = self._under_lease(attempt, redelivered=redelivered, last_chance=last_chance)
        if result.outcome is Outcome.RETRY:
            # Our sends are over (each ended by its deadline): hand the lease back so the next
            # attempt need not wait it out. A crash skips this on purpose: nobody knows then
            # whether a send is in flight, so the lease runs its course.
            self._invoices.release_lease(invoice_id, attempt.owner, now=self._clock())
        return result

    def _take_lease(
        self, invoice_id: str, provider: ProviderAdapter, *, last_chance: bool
    ) -> _Attempt | Result:
        """The send lease on the invoice, or the result when another holder has it or the
        invoice became final meanwhile."""
        # The send lease covers the retry budget plus the last call (each call ends by its
        # deadline); while it runs nobody else sends, and nobody records FAILED.
        owner = uuid.uuid4().hex
        lease = lease_seconds(self._retry, provider.max_call_seconds)
        if last_chance:  # it also waits for its last send to settle
            lease += provider.settle_seconds
        lease_ends = self._monotonic() + lease
        now = self._clock()
        leased = self._invoices.mark_processing(
            invoice_id,
            now=now,
            lease_until=now + timedelta(seconds=lease),
            owner=owner,
            last_chance=last_chance,
        )
        if leased is None:
            current = self._invoices.get(invoice_id)
            if current is not None and current.status in FINAL:
                self._ledger.upsert(LedgerRow.of(current))
                return Result(Outcome.ALREADY_FINAL, invoice_id, current.status.value)
            return Result(Outcome.RETRY, invoice_id, "another attempt holds the send lease")
        return _Attempt(leased, provider, owner, lease_ends)

    def _under_lease(self, attempt: _Attempt, *, redelivered: bool, last_chance: bool) -> Result:
        record, provider = attempt.record, attempt.provider
        try:
            signed, had_earlier_attempt = self._signed_document(record)
        except CertificateError as exc:  # not uploaded, expired or unreadable: a person must act
            return self._fail_unsent(record, _certificate_refused(exc), attempt.owner)
        if last_chance and record.last_chance_runs > 1:
            # An earlier DLQ run made the last sends: only the provider's word decides now.
            return self._decide_by_consult(attempt, "the last sends were made earlier")
        must_consult = redelivered or had_earlier_attempt or last_chance
        sent = self._send_with_retries(attempt, signed, must_consult=must_consult)
        if isinstance(sent, Result):
            return sent
        if last_chance:
            # The last sends are made: let them settle (the provider may still be processing
            # one that timed out), then only the provider's word decides.
            if attempt.last_send_end is not None:
                wait = attempt.last_send_end + provider.settle_seconds - self._monotonic()
                if wait > 0:
                    self._sleep(wait)
            return self._decide_by_consult(attempt, sent)
        return Result(Outcome.RETRY, record.invoice_id, sent)

    def _send_with_retries(
        self, attempt: _Attempt, signed: bytes, *, must_consult: bool
    ) -> Result | str:
        """Consult and send within the retry budget and the send lease: the definitive result,
        or why there is none yet."""
        record, provider = attempt.record, attempt.provider
        delay = self._retry.first_delay
        last_problem = "not attempted"
        started = self._monotonic()
        for try_number in range(self._retry.attempts):
            if try_number:
                if self._monotonic() - started + delay > self._retry.budget_seconds:
                    break
                self._sleep(delay)
                delay *= self._retry.factor
            if must_consult:
                found = provider.consult(attempt.rps)
                if isinstance(found, Issued):
                    return self._issue(record, found, "found by consult")
                if isinstance(found, TemporaryFailure):
                    last_problem = f"consult: {found.reason}"
                    continue
                # RpsNotFound: sending is safe even if an earlier send is still settling; the
                # provider refuses a duplicate RPS and the consult then finds it.
            if self._monotonic() + provider.max_call_seconds > attempt.lease_ends:
                last_problem = "send lease ending"  # a send now could outlive the lease
                break
            answer = provider.issue(signed)
            attempt.last_send_end = self._monotonic()
            if isinstance(answer, Issued):
                return self._issue(record, answer, "issued")
            if isinstance(answer, Rejected):
                if answer.duplicate_rps:
                    must_consult = True  # issued earlier: the consult will find it
                    last_problem = "duplicate RPS"
                    continue
                # A business rejection of this very document: definitive (the same bytes sent
                # earlier met the same rules), once no earlier holder may still be sending.
                guard = FailGuard.holder(attempt.owner, settled_before=self._clock())
                return self._fail(
                    record, FailureReason("PROVIDER_REJECTED", answer.summary()), guard
                )
            last_problem = f"send: {answer.reason}"
            must_consult = True  # the send may have gone through: never send blind again
        return last_problem

    def _decide_by_consult(self, attempt: _Attempt, why: str) -> Result:
        """Consult only: ISSUED if the provider has the NFS-e; FAILED if it says, in its own
        "RPS not found" words, that it has none, and every send has settled; else undecided."""
        record, provider = attempt.record, attempt.provider
        found = provider.consult(attempt.rps)
        if isinstance(found, Issued):
            return self._issue(record, found, "found by final consult")
        own_sends_settled = (
            attempt.last_send_end is None
            or self._monotonic() >= attempt.last_send_end + provider.settle_seconds
        )
        if isinstance(found, RpsNotFound) and own_sends_settled:
            settled_before = self._clock() - timedelta(seconds=provider.settle_seconds)
            guard = FailGuard.holder(attempt.owner, settled_before=settled_before)
            error = FailureReason(
                "PROVIDER_UNAVAILABLE",
                f"{why}; the provider confirms it has no NFS-e for RPS {record.rps.numero}",
            )
            return self._fail(record, error, guard)
        problem = found.reason if isinstance(found, TemporaryFailure) else "sends not settled"
        # Neither issued nor provably not issued: leave it for a later run, never guess.
        return Result(Outcome.RETRY, record.invoice_id, f"undecided: {problem}")

    def _signed_document(self, record: InvoiceRecord) -> tuple[bytes, bool]:
        """The signed RPS, stored before the first send; True if it existed (an earlier try).

        The item's signedKey is written after the object and before the first send, so it is
        the one record of "a send may have happened". Without it no send happened, and signing
        again (the same document, the same key: the same bytes) is safe."""
        if record.signed_key:
            return self._documents.read(record.signed_key), True
        key = signed_key(record.invoice_id)
        signed = self._sign(record.cnpj, record.municipio, self._documents.read(record.xml_key))
        self._documents.put_xml(key, signed)
        self._invoices.set_signed_key(record.invoice_id, key)
        return signed, False

    def _issue(self, record: InvoiceRecord, issued: Issued, how: str) -> Result:
        key = nfse_key(record.invoice_id)
        self._documents.put_xml(key, issued.raw_xml)
        self._invoices.mark_issued(
            record.invoice_id,
            processed_at=self._clock(),
            provider_protocol=issued.protocol,
            nfse_number=issued.nfse_number,
            verification_code=issued.verification_code,
            signed_key=signed_key(record.invoice_id),
            nfse_key=key,
            access_key=issued.access_key,
        )
        return self._settle(record.invoice_id, Outcome.ISSUED, how)

    def _fail(self, record: InvoiceRecord, error: FailureReason, guard: FailGuard) -> Result:
        self._invoices.mark_failed(
            record.invoice_id, processed_at=self._clock(), error=error, guard=guard
        )
        return self._settle(record.invoice_id, Outcome.FAILED, error.code)

    def _fail_unsent(
        self, record: InvoiceRecord, error: FailureReason, owner: str | None = None
    ) -> Result:
        """A failure before any send (no provider, no usable certificate): FAILED only if no
        send ever happened; otherwise an NFS-e may exist and only a consult may decide later."""
        return self._fail(record, error, FailGuard.never_sent(owner))

    def _settle(self, invoice_id: str, outcome: Outcome, detail: str) -> Result:
        """Copy the status of record (whoever won a race) to the ledger."""
        final = self._invoices.get(invoice_id)
        if final is not None and final.status not in FINAL:
            # FAILED was refused: a send may have happened, or another holder's lease runs,
            # or earlier sends have not settled. Decide later.
            return Result(Outcome.RETRY, invoice_id, f"{detail}: FAILED not provable yet")
        if final is not None:
            self._ledger.upsert(LedgerRow.of(final))
            if final.status is InvoiceStatus.ISSUED and outcome is not Outcome.ISSUED:
                outcome = Outcome.ISSUED
            elif final.status is InvoiceStatus.FAILED and outcome is Outcome.ISSUED:
                # Must not happen (the lease guards it); if it does, people must know at once.
                log.error(
                    "NFS-e issued for an invoice recorded FAILED",
                    extra={"invoice_id": invoice_id, "nfse": detail},
                )
        log.info(
            "invoice settled", extra={"invoice_id": invoice_id, "outcome": outcome, "how": detail}
        )
        return Result(outcome, invoice_id, detail)
