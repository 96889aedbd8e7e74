"""The RPS identity: a plain value object, so the read side (GetFn) needs no pydantic models."""

from __future__ import annotations

from dataclasses import dataclass

RPS_NUMERO_MAX = 999_999_999_999_999  # tsNumeroRps: 15 digits
RPS_SERIE_MAX_LENGTH = 5  # tsSerieRps


@dataclass(frozen=True, slots=True)
class RpsIdentity:
    """numero + serie + tipo: unique per prestador, allocated by the atomic counter."""

    numero: int
    serie: str
    tipo: int = 1

    def __post_init__(self) -> None:
        # Built from the counter or from stored records, never from client input: a violation
        # here is a bug, not a 4xx.
        if not 1 <= self.numero <= RPS_NUMERO_MAX:
            raise ValueError(f"RPS numero out of range: {self.numero}")
        if not 1 <= len(self.serie) <= RPS_SERIE_MAX_LENGTH:
            raise ValueError(f"RPS serie must have 1 to 5 characters: {self.serie!r}")
        if self.tipo not in (1, 2, 3):
            raise ValueError(f"RPS tipo must be 1, 2 or 3: {self.tipo}")
