"""InvoicesTable: the status of record of every invoice.

Status moves only forward, enforced by ConditionExpressions (never by a read then a write):
see nfse_core.domain.status.ALLOWED_FROM.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from nfse_core.domain.invoice import (
    ATTRIBUTES,
    FailureReason,
    InvoiceRecord,
    from_document,
    iso,
    to_document,
)
from nfse_core.domain.status import ALLOWED_FROM, FINAL, InvoiceStatus

_EPOCH = "1970-01-01T00:00:00.000Z"  # "no earlier lease", in the lease's ISO format
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()

# The sweeper's sparse index (template.yaml: InvoicesTable PendingIndex): invoices not yet
# final, or final without their ledger row. Spread over a few partition keys so a burst of
# emits does not write one GSI partition (1,000 writes/s each).
PENDING_SHARD = "pendingShard"
PENDING_INDEX = "PendingIndex"
PENDING_SHARDS = 16


def pending_shard(invoice_id: str) -> str:
    return str(int(hashlib.sha256(invoice_id.encode()).hexdigest()[:8], 16) % PENDING_SHARDS)


# Written only by the lease's own conditional updates, never by a whole-item put.
LEASE_ATTRIBUTES = frozenset(
    {"lease_until", "prev_lease_until", "lease_owner", "last_attempt_at", "last_chance_runs"}
)
STORED_ATTRIBUTES = tuple(a for a in ATTRIBUTES if a not in LEASE_ATTRIBUTES)


def to_item(record: InvoiceRecord) -> dict[str, Any]:
    """The DynamoDB item of a whole-item put: the stored attributes that have a value, plus the
    sweeper's marker while the invoice is not final."""
    plain = to_document(record, STORED_ATTRIBUTES)
    item = {k: _SERIALIZER.serialize(v) for k, v in plain.items() if v is not None}
    if record.status not in FINAL:
        # The sparse index of invoices the sweeper watches (see sweep.py): present until
        # the invoice is final and its ledger row written.
        item[PENDING_SHARD] = {"S": pending_shard(record.invoice_id)}
    return item


def from_item(item: dict[str, Any]) -> InvoiceRecord:
    """The record a DynamoDB item holds."""
    return from_document({k: _DESERIALIZER.deserialize(v) for k, v in item.items()})


@dataclass(frozen=True, slots=True)
class FailGuard:
    """When FAILED may be recorded. An NFS-e may exist, or yet appear, once a send happened;
    the guard states what the caller knows that rules it out, as a condition DynamoDB checks.

    - `never_sent()`: no send ever happened (signedKey is written before the first send and
      is absent) and no lease but the caller's runs: a failure before any send (no provider
      configured, no usable certificate, an emit that could not be queued).
    - `holder(owner, settled_before)`: the caller holds the lease, and the previous holders'
      leases ended before `settled_before` (for a rejection: now; for a consult's "not found":
      now minus the provider's settle time). The caller vouches for its own sends.
    """

    owner: str | None
    settled_before: datetime | None = None

    @classmethod
    def never_sent(cls, owner: str | None = None) -> FailGuard:
        return cls(owner)

    @classmethod
    def holder(cls, owner: str, settled_before: datetime) -> FailGuard:
        return cls(owner, settled_before)

    def condition(self, now: datetime) -> tuple[str, dict[str, Any]]:
        if self.settled_before is None:
            values: dict[str, Any] = {":now": {"S": iso(now)}}
            lease_free = "attribute_not_exists(leaseUntil) OR leaseUntil < :now"
            if self.owner is not None:
                lease_free += " OR leaseOwner = :owner"
                values[":owner"] = {"S": self.owner}
            return f"attribute_not_exists(signedKey) AND ({lease_free})", values
        assert self.owner is not None
        values = {":owner": {"S": self.owner}, ":settled": {"S": iso(self.settled_before)}}
        return "leaseOwner = :owner AND prevLeaseUntil < :settled", values


class InvoiceRepository:
    """Conditional writes on InvoicesTable; every transition says which statuses it may leave."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def put_emitted(self, record: InvoiceRecord) -> bool:
        """Create the invoice; False (never an overwrite) when the id exists already: with an
        idempotency key the id is the key's, so that is a retry of the same request."""
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=to_item(record),
                ConditionExpression="attribute_not_exists(invoiceId)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def get(self, invoice_id: str, *, consistent: bool = True) -> InvoiceRecord | None:
        answer = self._ddb.get_item(
            TableName=self._table, Key={"invoiceId": {"S": invoice_id}}, ConsistentRead=consistent
        )
        item = answer.get("Item")
        return from_item(item) if item else None

    def mark_processing(
        self,
        invoice_id: str,
        *,
        now: datetime,
        lease_until: datetime,
        owner: str,
        last_chance: bool = False,
    ) -> InvoiceRecord | None:
        """PROCESSING under an exclusive send lease; the item as it now is, or None.

        Until `lease_until` the holder `owner` may be talking to the provider: nobody else can
        take the lease, and nobody else may declare the invoice FAILED. A lease is taken only
        when none is running (absent, expired, or handed back). The end of the previous one
        is kept as prevLeaseUntil: its holder's sends ended by then, and a consult's "not
        found" proves nothing until they have settled (see mark_failed).
        None when the invoice is final or another holder's lease is running.
        """
        sets = [
            "#status = :processing",
            "prevLeaseUntil = if_not_exists(leaseUntil, :epoch)",
            "leaseUntil = :lease",
            "leaseOwner = :owner",
            "lastAttemptAt = :now",
        ]
        values: dict[str, Any] = {
            ":processing": {"S": InvoiceStatus.PROCESSING.value},
            ":emitted": {"S": InvoiceStatus.EMITTED.value},
            ":epoch": {"S": _EPOCH},
            ":lease": {"S": iso(lease_until)},
            ":owner": {"S": owner},
            ":now": {"S": iso(now)},
        }
        if last_chance:
            sets.append("lastChanceRuns = if_not_exists(lastChanceRuns, :zero) + :one")
            values |= {":zero": {"N": "0"}, ":one": {"N": "1"}}
        try:
            answer = self._ddb.update_item(
                TableName=self._table,
                Key={"invoiceId": {"S": invoice_id}},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=(
                    "attribute_exists(invoiceId) AND #status IN (:emitted, :processing)"
                    " AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return None
        return from_item(answer["Attributes"])

    def release_lease(self, invoice_id: str, owner: str, *, now: datetime) -> None:
        """The holder's sends are over: its lease ends now, so the next attempt need not wait
        it out. (A crashed holder never releases; its lease simply runs out.)"""
        with contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException):
            self._ddb.update_item(
                TableName=self._table,
                Key={"invoiceId": {"S": invoice_id}},
                UpdateExpression="SET leaseUntil = :now, leaseOwner = :released",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":released": {"S": f"released:{owner}"},
                    ":now": {"S": iso(now)},
                },
            )

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
    ) -> bool:
        """ISSUED whatever any lease says: the provider's word is final. The caller writes the
        ledger row next (and again on any redelivery), so the sweeper's marker goes."""
        return self._transition(
            invoice_id,
            InvoiceStatus.ISSUED,
            {
                "processedAt": iso(processed_at),
                "providerProtocol": provider_protocol,
                "nfseNumber": nfse_number,
                "verificationCode": verification_code,
                "signedKey": signed_key,
                "nfseKey": nfse_key,
                "accessKey": access_key,
            },
            remove=(PENDING_SHARD,),
        )

    def mark_failed(
        self,
        invoice_id: str,
        *,
        processed_at: datetime,
        error: FailureReason,
        guard: FailGuard,
        ledger_follows: bool = True,
    ) -> bool:
        """FAILED, if `guard` holds (see FailGuard): FAILED must never be recorded for an
        invoice the provider issued or may still issue. `ledger_follows`: the caller writes the
        ledger row itself; otherwise the sweeper's marker stays so the sweeper writes it."""
        condition, values = guard.condition(processed_at)
        return self._transition(
            invoice_id,
            InvoiceStatus.FAILED,
            {"processedAt": iso(processed_at), "error": error.as_dict()},
            guard=(condition, values),
            remove=(PENDING_SHARD,) if ledger_follows else (),
        )

    def pending_before(self, shard: int, cutoff: datetime) -> Iterator[str]:
        """Ids in the sweeper's index (shard `shard`) created before `cutoff`, oldest first."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": PENDING_INDEX,
            "KeyConditionExpression": "#shard = :shard AND createdAt < :cutoff",
            "ExpressionAttributeNames": {"#shard": PENDING_SHARD},
            "ExpressionAttributeValues": {
                ":shard": {"S": str(shard)},
                ":cutoff": {"S": iso(cutoff)},
            },
        }
        while True:
            answer = self._ddb.query(**kwargs)
            for item in answer.get("Items", []):
                yield item["invoiceId"]["S"]
            if "LastEvaluatedKey" not in answer:
                return
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def note_redrive(self, invoice_id: str, *, now: datetime) -> bool:
        """The sweeper queues the invoice again: recorded as an attempt (lastAttemptAt), so it
        counts as live work for a while; False if it moved on or a lease runs meanwhile."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"invoiceId": {"S": invoice_id}},
                UpdateExpression="SET lastAttemptAt = :now",
                ConditionExpression=(
                    "#status IN (:emitted, :processing)"
                    " AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":now": {"S": iso(now)},
                    ":emitted": {"S": InvoiceStatus.EMITTED.value},
                    ":processing": {"S": InvoiceStatus.PROCESSING.value},
                },
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def clear_pending(self, invoice_id: str) -> None:
        """The invoice is final and its ledger row written: the sweeper may forget it."""
        with contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException):
            self._ddb.update_item(
                TableName=self._table,
                Key={"invoiceId": {"S": invoice_id}},
                UpdateExpression=f"REMOVE {PENDING_SHARD}",
                ConditionExpression="#status IN (:issued, :failed, :cancelled)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":issued": {"S": InvoiceStatus.ISSUED.value},
                    ":failed": {"S": InvoiceStatus.FAILED.value},
                    ":cancelled": {"S": InvoiceStatus.CANCELLED.value},
                },
            )

    def set_signed_key(self, invoice_id: str, key: str) -> None:
        """Record where the signed document is; allowed in any status (it is a fact, not a move)."""
        self._ddb.update_item(
            TableName=self._table,
            Key={"invoiceId": {"S": invoice_id}},
            UpdateExpression="SET signedKey = :k",
            ConditionExpression="attribute_exists(invoiceId)",
            ExpressionAttributeValues={":k": {"S": key}},
        )

    def _transition(
        self,
        invoice_id: str,
        target: InvoiceStatus,
        attrs: dict[str, Any],
        guard: tuple[str, dict[str, Any]] | None = None,
        remove: tuple[str, ...] = (),
    ) -> bool:
        """Move to `target` if the current status allows it (and `guard` holds); False when it
        had already moved on or the guard refused."""
        sets = ["#status = :target"]
        names = {"#status": "status"}
        values: dict[str, Any] = {":target": {"S": target.value}}
        for i, (name, value) in enumerate(a for a in attrs.items() if a[1] is not None):
            names[f"#a{i}"] = name
            values[f":a{i}"] = _SERIALIZER.serialize(value)
            sets.append(f"#a{i} = :a{i}")
        allowed = sorted(s.value for s in ALLOWED_FROM[target])
        for i, status in enumerate(allowed):
            values[f":from{i}"] = {"S": status}
        condition = f"#status IN ({', '.join(f':from{i}' for i in range(len(allowed)))})"
        if guard is not None:
            condition += f" AND ({guard[0]})"
            values.update(guard[1])
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"invoiceId": {"S": invoice_id}},
                UpdateExpression="SET "
                + ", ".join(sets)
                + (" REMOVE " + ", ".join(remove) if remove else ""),
                ConditionExpression=f"attribute_exists(invoiceId) AND {condition}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True
