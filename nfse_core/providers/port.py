"""The typed answers of a municipality's provider (the port itself: nfse_core.services.ports).

Every call answers with a value, never an exception, and the value says what the caller may
do next:
- Issued / Cancelled: done, record it.
- Rejected: a business answer from the provider; permanent (a retry cannot fix it) unless
  `duplicate_rps` is set: the provider already has this RPS, so the caller consults by RPS.
- TemporaryFailure: nothing definitive is known (timeout, connection error, HTTP 5xx, SOAP
  Fault, an answer we could not read, a consult whose messages are not the provider's explicit
  "RPS not found"). A GerarNfse that ends like this MAY have issued the NFS-e: consult before
  sending again.
- RpsNotFound: the consult says, in the provider's own "RPS not found" words and nothing else,
  that it has no NFS-e for the RPS. Only this may ever count as proof that nothing was issued,
  and only once every send has settled (see nfse_core.services.ports.Provider.settle_seconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ProviderMessage:
    """One ABRASF MensagemRetorno."""

    codigo: str
    mensagem: str
    correcao: str | None = None

    def __str__(self) -> str:
        text = f"{self.codigo}: {self.mensagem}"
        return f"{text} ({self.correcao})" if self.correcao else text


@dataclass(frozen=True, slots=True)
class RpsKey:
    """What identifies an RPS to its provider: the prestador and numero + serie + tipo."""

    cnpj: str
    inscricao_municipal: str | None
    numero: int
    serie: str
    tipo: int = 1
    # The emitting municipality (IBGE): part of NFS-e Nacional's DPS identifier.
    municipio: str | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    """The NFS-e exists. raw_xml is the NFS-e as its provider issued it (ABRASF: the CompNfse
    element as a standalone document; NFS-e Nacional: the NFSe document)."""

    nfse_number: str
    verification_code: str
    protocol: str | None
    issued_at: datetime
    raw_xml: bytes = field(repr=False)
    # NFS-e Nacional's chave de acesso (50 digits); None for ABRASF.
    access_key: str | None = None


@dataclass(frozen=True, slots=True)
class LoteIssued:
    """A synchronous lot was processed: one Issued per RPS, in the provider's order."""

    protocol: str | None
    numero_lote: str | None
    nfses: tuple[Issued, ...]
    raw_xml: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Rejected:
    """The provider refused the document (ListaMensagemRetorno)."""

    messages: tuple[ProviderMessage, ...]
    duplicate_rps: bool = False
    raw_xml: bytes | None = field(default=None, repr=False)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(m.codigo for m in self.messages)

    def summary(self) -> str:
        return "; ".join(str(m) for m in self.messages) or "rejected without a message"


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    SOAP_FAULT = "soap_fault"
    INVALID_ANSWER = "invalid_answer"
    # A consult answered with messages that are not only the provider's "RPS not found" (an
    # internal error beside it, an unknown code): neither issued nor provably not issued.
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class TemporaryFailure:
    """Nothing definitive is known; try again later (after retry_after seconds if given)."""

    reason: str
    kind: FailureKind
    retry_after: float | None = None
    http_status: int | None = None


@dataclass(frozen=True, slots=True)
class RpsNotFound:
    """The consult found no NFS-e for the RPS; the provider's messages say why."""

    messages: tuple[ProviderMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class Cancelled:
    nfse_number: str | None
    cancelled_at: datetime | None
    raw_xml: bytes = field(repr=False)


GerarNfseResult = Issued | Rejected | TemporaryFailure
LoteResult = LoteIssued | Rejected | TemporaryFailure
ConsultaResult = Issued | RpsNotFound | TemporaryFailure
CancelamentoResult = Cancelled | Rejected | TemporaryFailure
