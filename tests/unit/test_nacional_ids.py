"""The DPS Id and the chave de acesso of NFS-e Nacional (leiaute DPS v1.01, TSIdDPS)."""

from __future__ import annotations

import pytest

from nfse_core.providers.nacional.ids import DPS_ID_LENGTH, dps_id, is_chave_acesso

pytestmark = pytest.mark.unit


def test_a_cnpj_prestador_gives_the_45_character_id() -> None:
    value = dps_id("3550308", "11222333000181", "1", 42)
    assert value == "DPS" + "3550308" + "2" + "11222333000181" + "00001" + "0" * 13 + "42"
    assert len(value) == DPS_ID_LENGTH


def test_a_cpf_prestador_is_type_1_and_zero_padded() -> None:
    value = dps_id("1200401", "52998224725", "900", 7)
    assert value[3:10] == "1200401" and value[10] == "1"
    assert value[11:25] == "00052998224725" and value[25:30] == "00900"


@pytest.mark.parametrize(
    ("municipio", "serie", "numero"),
    [("355030", "1", 1), ("3550308", "A1", 1), ("3550308", "123456", 1),
     ("3550308", "1", 0), ("3550308", "1", 10**15)],
)  # fmt: skip
def test_what_cannot_form_an_id_is_refused(municipio: str, serie: str, numero: int) -> None:
    with pytest.raises(ValueError):
        dps_id(municipio, "11222333000181", serie, numero)


def test_chave_de_acesso_has_50_digits() -> None:
    assert is_chave_acesso("3" * 50)
    assert not is_chave_acesso("3" * 49)
    assert not is_chave_acesso("3" * 49 + "X")
    assert not is_chave_acesso(None)
