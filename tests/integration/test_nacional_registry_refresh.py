"""`admin refresh-nacional` against the simulated ADN parametrização (mutual TLS): adhering
municipalities get the nacional-1.01 entry, the others lose it, an unanswered one is named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfse_core.providers.nacional import parametrizacao
from nfse_core.providers.registry import ProviderRegistry, parse_overlay
from nfse_local.__main__ import main
from nfse_local.certs import generate_key_and_certificate, to_pfx
from nfse_local.nacional_registry import refresh, session_with
from nfse_local.simulator_nacional import NacionalSimulator

pytestmark = pytest.mark.integration

CNPJ = "11222333000181"
KEY, CERT = generate_key_and_certificate(CNPJ)
PASSWORD = "senha-de-teste"
BELO_HORIZONTE, CURITIBA, SAO_CAETANO = "3106200", "4106902", "3548807"


@pytest.fixture
def sim() -> Iterator[NacionalSimulator]:
    with NacionalSimulator(trusted_clients=[CERT]) as simulator:
        simulator.convenios = {BELO_HORIZONTE: True, CURITIBA: True, "3550308": False}
        yield simulator


@pytest.fixture
def pfx(tmp_path: Path) -> Path:
    path = tmp_path / "a1.pfx"
    path.write_bytes(to_pfx(KEY, CERT, PASSWORD))
    return path


def test_the_service_s_answers_are_read(sim: NacionalSimulator, pfx: Path) -> None:
    session = session_with(pfx, PASSWORD, str(sim.ca_bundle))
    active = parametrizacao.convenio(session, sim.parametrizacao_url, CURITIBA)
    assert active.active and active.emissor_nacional and active.ambiente_nacional
    inactive = parametrizacao.convenio(session, sim.parametrizacao_url, SAO_CAETANO)
    assert not inactive.active and "ainda não está ativo" in inactive.mensagem
    with pytest.raises(parametrizacao.ParametrizacaoUnavailable):
        parametrizacao.convenio(session, sim.root_url + "/nada", CURITIBA)


def test_the_command_writes_a_registry_file_put_providers_accepts(
    sim: NacionalSimulator, pfx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "base.json"
    base.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "municipios": {
                    "3550308": {"name": "sao-paulo-sp", "profile": "nacional-1.01"},
                    "2927408": {
                        "name": "salvador-ba",
                        "profile": "abrasf-2.04",
                        "endpoints": {
                            "producao": "https://nfse.salvador.example.invalid/ws",
                            "homologacao": "https://h.nfse.salvador.example.invalid/ws",
                        },
                        "example": True,
                    },
                },
            }
        )
    )
    out = tmp_path / "providers.json"
    monkeypatch.setenv("A1_PASSWORD", PASSWORD)
    code = main(
        [
            "admin", "refresh-nacional", f"{BELO_HORIZONTE},{CURITIBA},3550308,{SAO_CAETANO}",
            "--out", str(out), "--base", str(base), "--pfx", str(pfx),
            "--password-env", "A1_PASSWORD", "--parametrizacao-url", sim.parametrizacao_url,
            "--ca-bundle", str(sim.ca_bundle),
        ]
    )  # fmt: skip
    assert code == 0
    written = json.loads(out.read_text())
    municipios = written["municipios"]
    assert municipios[CURITIBA]["profile"] == "nacional-1.01"
    assert municipios[CURITIBA]["name"] == "curitiba-pr"
    assert "aderenteEmissorNacional=1" in municipios[CURITIBA]["notes"]
    assert "3550308" not in municipios  # adheres no more: its nacional entry goes
    assert SAO_CAETANO not in municipios  # no agreement: never added
    assert municipios["2927408"]["profile"] == "abrasf-2.04"  # other entries stay
    registry = ProviderRegistry(*parse_overlay(written))
    assert registry.standard_of(CURITIBA) == "nacional-1.01"


def test_an_unanswered_municipality_is_left_as_it_was() -> None:
    def ask(municipio: str) -> parametrizacao.Convenio:
        raise parametrizacao.ParametrizacaoUnavailable(municipio)

    overlay = {
        "schema_version": 1,
        "municipios": {CURITIBA: {"name": "c", "profile": "nacional-1.01"}},
    }
    refreshed, changes = refresh(overlay, [CURITIBA], ask)
    assert refreshed["municipios"] == overlay["municipios"]
    assert changes["unanswered"] == [CURITIBA]
