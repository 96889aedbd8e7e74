"""The invoice: its record, its failure reason, and the one definition of its fields.

Every outside form of an invoice is derived from `InvoiceRecord`'s fields:
- the document (`to_document` / `from_document`): camelCase keys, JSON-ready values; the
  DynamoDB item, the GET answer and the queue message are selections of it;
- the flat form (`flat_values`): snake_case keys, composite values spread into one key per part
  (`rps_numero`, `error_code`, ...): the ledger's columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from nfse_core.domain.fiscal import Retencoes, Valores
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.status import InvoiceStatus

CENTS = Decimal("0.01")


def utc_now() -> datetime:
    """The clock the services take by default (tests hand in their own)."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds, the one timestamp format of the tables and the API."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The inverse of `iso` (also reads any ISO-8601 text with an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class FailureReason:
    """Why an invoice is FAILED: a stable code and a message for people."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    """An invoice as the status of record holds it."""

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
    # NFS-e Nacional's chave de acesso (50 digits); None for ABRASF.
    access_key: str | None = None
    error: FailureReason | None = None
    # Fingerprint of the request body, so a replay of its Idempotency-Key can tell a retry
    # from another request (emit.py); absent without a key.
    request_hash: str | None = None
    # The send lease (see InvoiceRepository.mark_processing); set by the worker and ProcessorFn.
    lease_until: datetime | None = None
    prev_lease_until: datetime | None = None
    lease_owner: str | None = None
    last_attempt_at: datetime | None = None
    # DLQ runs of ProcessorFn that took this invoice (the first one makes its last sends, later
    # ones only consult).
    last_chance_runs: int = 0
    # The invoice's amounts, computed from the request (nfse_core.domain.fiscal); absent on
    # invoices recorded before they were kept.
    valores: Valores | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def with_status(self, status: InvoiceStatus) -> InvoiceRecord:
        return replace(self, status=status)


_NOT_A_FIELD = frozenset({"extra"})

# Every attribute of an invoice, in the record's order.
ATTRIBUTES: tuple[str, ...] = tuple(
    f.name for f in fields(InvoiceRecord) if f.name not in _NOT_A_FIELD
)


def document_key(attribute: str) -> str:
    """The camelCase key of a record attribute (`invoice_id` -> `invoiceId`)."""
    head, *rest = attribute.split("_")
    return head + "".join(part.capitalize() for part in rest)


_RETENCOES = ("pis", "cofins", "inss", "ir", "csll", "outras")
_VALORES_AMOUNTS = (
    "valor_servicos",
    "valor_deducoes",
    "desconto_incondicionado",
    "desconto_condicionado",
    "base_calculo",
    "aliquota",
    "valor_iss",
    "valor_iss_retido",
    "valor_liquido",
)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def encode_valores(valores: Valores) -> dict[str, Any]:
    """The amounts as decimal strings under camelCase keys (exact in JSON and DynamoDB)."""
    document: dict[str, Any] = {
        document_key(name): _text(getattr(valores, name)) for name in _VALORES_AMOUNTS
    }
    document["issRetido"] = valores.iss_retido
    document["retencoes"] = {name: _text(getattr(valores.retencoes, name)) for name in _RETENCOES}
    return document


def _amount(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(CENTS)


def decode_valores(data: Mapping[str, Any] | None) -> Valores | None:
    if not data:
        return None
    amounts: dict[str, Any] = {
        name: _amount(data.get(document_key(name))) for name in _VALORES_AMOUNTS
    }
    retencoes = Retencoes(**{n: Decimal(data["retencoes"][n]) for n in _RETENCOES})
    return Valores(retencoes=retencoes, iss_retido=bool(data["issRetido"]), **amounts)


def _encode(value: Any) -> Any:
    if isinstance(value, InvoiceStatus):
        return value.value
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, RpsIdentity):
        return {"numero": value.numero, "serie": value.serie, "tipo": value.tipo}
    if isinstance(value, FailureReason):
        return value.as_dict()
    if isinstance(value, Valores):
        return encode_valores(value)
    return value


def to_document(record: InvoiceRecord, attributes: Iterable[str] = ATTRIBUTES) -> dict[str, Any]:
    """The chosen attributes under their document keys; absent values are None."""
    return {document_key(a): _encode(getattr(record, a)) for a in attributes}


def _moment(value: Any) -> datetime | None:
    return parse_iso(value) if value else None


def _rps(value: Mapping[str, Any]) -> RpsIdentity:
    return RpsIdentity(numero=int(value["numero"]), serie=value["serie"], tipo=int(value["tipo"]))


def _failure(value: Mapping[str, Any] | None) -> FailureReason | None:
    return FailureReason(value["code"], value["message"]) if value else None


def _same(value: Any) -> Any:
    return value


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "status": InvoiceStatus,
    "created_at": parse_iso,
    # Number stores drop trailing zeros ("1500.00" comes back as 1500): money has 2 places.
    "total": lambda value: Decimal(value).quantize(CENTS),
    "rps": _rps,
    "error": _failure,
    "processed_at": _moment,
    "lease_until": _moment,
    "prev_lease_until": _moment,
    "last_attempt_at": _moment,
    "last_chance_runs": int,
    "valores": decode_valores,
}


def from_document(data: Mapping[str, Any]) -> InvoiceRecord:
    """The record a document holds (keys it lacks take the record's defaults)."""
    values = {
        a: _DECODERS.get(a, _same)(data[document_key(a)])
        for a in ATTRIBUTES
        if document_key(a) in data
    }
    return InvoiceRecord(**values)


_COMPOSITES: dict[str, type[RpsIdentity] | type[FailureReason]] = {
    "rps": RpsIdentity,
    "error": FailureReason,
}


def flat_values(record: InvoiceRecord) -> dict[str, Any]:
    """Snake_case values with each composite spread into one entry per part (`rps_numero`,
    `error_code`; all None when the composite is absent): the ledger's columns are a selection
    of them."""
    flat: dict[str, Any] = {}
    for attribute in ATTRIBUTES:
        value = getattr(record, attribute)
        composite = _COMPOSITES.get(attribute)
        if composite is None:
            flat[attribute] = value
            continue
        for part in fields(composite):
            flat[f"{attribute}_{part.name}"] = getattr(value, part.name) if value else None
    return flat
