"""InvoicesTable: the status of record of every invoice.

Status moves only forward, enforced by ConditionExpressions (never by a read then a write):
see nfse_core.domain.status.ALLOWED_FROM.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import ALLOWED_FROM, InvoiceStatus

CENTS = Decimal("0.01")
_EPOCH = "1970-01-01T00:00:00.000Z"  # "no earlier lease", in the lease's ISO format
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def utc_now() -> datetime:
    """The clock the services take by default (tests hand in their own)."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds, the one timestamp format of the tables and the API."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class InvoiceError:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    invoice_id: str
    tenant: str
    status: InvoiceStatus
    created_at: datetime
    total: Decimal
    cnpj: str
    municipio: str
    rps: RpsIdentity
    xml_key: str
    inscricao_municipal: str | None = None
    reference: str | None = None
    processed_at: datetime | None = None
    provider_protocol: str | None = None
    nfse_number: str | None = None
    verification_code: str | None = None
    signed_key: str | None = None
    nfse_key: str | None = None
    error: InvoiceError | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_item(self) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "invoiceId": self.invoice_id,
            "tenant": self.tenant,
            "status": self.status.value,
            "createdAt": iso(self.created_at),
            "total": self.total,
            "cnpj": self.cnpj,
            "municipio": self.municipio,
            "rps": {"numero": self.rps.numero, "serie": self.rps.serie, "tipo": self.rps.tipo},
            "xmlKey": self.xml_key,
            "inscricaoMunicipal": self.inscricao_municipal,
            "reference": self.reference,
            "processedAt": iso(self.processed_at) if self.processed_at else None,
            "providerProtocol": self.provider_protocol,
            "nfseNumber": self.nfse_number,
            "verificationCode": self.verification_code,
            "signedKey": self.signed_key,
            "nfseKey": self.nfse_key,
            "error": self.error.as_dict() if self.error else None,
        }
        return {k: _SERIALIZER.serialize(v) for k, v in plain.items() if v is not None}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> InvoiceRecord:
        data = {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}
        rps = data["rps"]
        error = data.get("error")
        return cls(
            invoice_id=data["invoiceId"],
            tenant=data["tenant"],
            status=InvoiceStatus(data["status"]),
            created_at=parse_iso(data["createdAt"]),
            # DynamoDB drops trailing zeros ("1500.00" comes back as 1500): money has 2 places.
            total=Decimal(data["total"]).quantize(CENTS),
            cnpj=data["cnpj"],
            municipio=data["municipio"],
            rps=RpsIdentity(numero=int(rps["numero"]), serie=rps["serie"], tipo=int(rps["tipo"])),
            xml_key=data["xmlKey"],
            inscricao_municipal=data.get("inscricaoMunicipal"),
            reference=data.get("reference"),
            processed_at=parse_iso(data["processedAt"]) if data.get("processedAt") else None,
            provider_protocol=data.get("providerProtocol"),
            nfse_number=data.get("nfseNumber"),
            verification_code=data.get("verificationCode"),
            signed_key=data.get("signedKey"),
            nfse_key=data.get("nfseKey"),
            error=InvoiceError(error["code"], error["message"]) if error else None,
        )

    def with_status(self, status: InvoiceStatus) -> InvoiceRecord:
        return replace(self, status=status)


class InvoiceRepository:
    """Conditional writes on InvoicesTable; every transition says which statuses it may leave."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def put_emitted(self, record: InvoiceRecord) -> None:
        """Create the invoice; an existing id is a programming error, never an overwrite."""
        self._ddb.put_item(
            TableName=self._table,
            Item=record.to_item(),
            ConditionExpression="attribute_not_exists(invoiceId)",
        )

    def get(self, invoice_id: str, *, consistent: bool = True) -> InvoiceRecord | None:
        answer = self._ddb.get_item(
            TableName=self._table, Key={"invoiceId": {"S": invoice_id}}, ConsistentRead=consistent
        )
        item = answer.get("Item")
        return InvoiceRecord.from_item(item) if item else None

    def mark_processing(self, invoice_id: str, *, lease_until: datetime, owner: str) -> bool:
        """PROCESSING under a send lease: until `lease_until` the holder `owner` may be talking
        to the provider, so nobody else may declare the invoice FAILED (see mark_failed).

        Leases only grow: a new one must end no earlier than the current one, and the end of
        the one it replaces is kept (prevLeaseUntil), since that holder may still be sending.
        False when the invoice is already final or an older, longer lease is still running.
        """
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"invoiceId": {"S": invoice_id}},
                UpdateExpression=(
                    "SET #status = :processing, prevLeaseUntil = if_not_exists(leaseUntil, :epoch),"
                    " leaseUntil = :lease, leaseOwner = :owner"
                ),
                ConditionExpression=(
                    "attribute_exists(invoiceId) AND #status IN (:emitted, :processing)"
                    " AND (attribute_not_exists(leaseUntil) OR leaseUntil <= :lease)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":processing": {"S": InvoiceStatus.PROCESSING.value},
                    ":emitted": {"S": InvoiceStatus.EMITTED.value},
                    ":epoch": {"S": _EPOCH},
                    ":lease": {"S": iso(lease_until)},
                    ":owner": {"S": owner},
                },
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_lease(self, invoice_id: str, owner: str) -> None:
        """The holder's sends are over: its lease ends now. The lease it replaced (a holder
        that may still be sending) stays in force, so leaseUntil goes back to that one's end."""
        # A later holder may have taken over: its lease, not ours, is then in force.
        with contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException):
            self._ddb.update_item(
                TableName=self._table,
                Key={"invoiceId": {"S": invoice_id}},
                UpdateExpression="SET leaseUntil = prevLeaseUntil, leaseOwner = :released",
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":released": {"S": f"released:{owner}"},
                },
            )

    def mark_issued(
        self,
        invoice_id: str,
        *,
        processed_at: datetime,
        provider_protocol: str | None,
        nfse_number: str,
        verification_code: str | None,
        signed_key: str | None,
        nfse_key: str | None,
    ) -> bool:
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
            },
        )

    def mark_failed(
        self,
        invoice_id: str,
        *,
        processed_at: datetime,
        error: InvoiceError,
        owner: str | None = None,
    ) -> bool:
        """FAILED, unless another holder's send lease is still running: its send may yet be
        issued, and FAILED must never be recorded for an invoice the provider issued."""
        guard = "attribute_not_exists(leaseUntil) OR leaseUntil < :now"
        guard_values: dict[str, Any] = {":now": {"S": iso(processed_at)}}
        if owner is not None:
            # The holder's own sends are over; the lease it replaced must be over too.
            guard += " OR (leaseOwner = :owner AND prevLeaseUntil < :now)"
            guard_values[":owner"] = {"S": owner}
        return self._transition(
            invoice_id,
            InvoiceStatus.FAILED,
            {"processedAt": iso(processed_at), "error": error.as_dict()},
            guard=(guard, guard_values),
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
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=f"attribute_exists(invoiceId) AND {condition}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True
