"""Identifiers of NFS-e Nacional: the DPS Id and the chave de acesso.

DPS Id (infDPS@Id, leiaute DPS v1.01, TSIdDPS): "DPS" + cMun (7, the emitting municipality)
+ tpInsc (1: 1 CPF, 2 CNPJ) + the prestador's inscrição federal (14, CPF zero-padded on the
left) + série (5, zero-padded) + nDPS (15, zero-padded): 45 characters.
The chave de acesso of the NFS-e has 50 digits.
"""

from __future__ import annotations

import re

_CPF_LENGTH = 11
_SERIE = re.compile(r"[0-9]{1,5}")
_CHAVE = re.compile(r"[0-9]{50}")
DPS_ID_LENGTH = 45
NDPS_MAX = 10**15 - 1


def dps_id(municipio: str, inscricao: str, serie: str, numero: int) -> str:
    """The Id of the DPS numbered `numero` in `serie` of the prestador `inscricao` (CPF or CNPJ)
    emitting in `municipio`."""
    if not (len(municipio) == 7 and municipio.isdigit()):
        raise ValueError(f"municipio must be an IBGE code of 7 digits, got {municipio!r}")
    if _SERIE.fullmatch(serie) is None:
        raise ValueError(f"série must be 1 to 5 digits for NFS-e Nacional, got {serie!r}")
    if not 1 <= numero <= NDPS_MAX:
        raise ValueError(f"nDPS must be 1 to 15 digits, got {numero}")
    tipo = "1" if len(inscricao) == _CPF_LENGTH else "2"
    return f"DPS{municipio}{tipo}{inscricao.zfill(14)}{serie.zfill(5)}{numero:015d}"


def is_chave_acesso(value: object) -> bool:
    """A 50-digit chave de acesso."""
    return isinstance(value, str) and _CHAVE.fullmatch(value) is not None
