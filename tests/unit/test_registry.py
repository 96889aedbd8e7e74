"""Provider registry: IBGE code -> provider settings, examples, local-mode override."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from nfse_core.config import IssuanceSettings, SettingsError
from nfse_core.providers.abrasf import AbrasfSoapClient
from nfse_core.providers.registry import (
    ProviderNotConfigured,
    ProviderRegistry,
    RegistryError,
    load_default_data,
    parse_registry_data,
)

pytestmark = pytest.mark.unit


def _raw() -> dict[str, Any]:
    text = resources.files("nfse_core.providers").joinpath("data/providers.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def test_known_municipality_resolves_with_its_profile() -> None:
    registry = ProviderRegistry.default(environment="homologacao")
    resolved = registry.resolve("4314902")
    assert resolved.config.signature_algorithm == "rsa-sha256"
    assert resolved.config.digest_algorithm == "sha256"
    assert resolved.config.soap_version == "1.2"
    assert resolved.endpoint == resolved.config.endpoints.homologacao
    assert not resolved.simulated


def test_entry_overrides_its_profile() -> None:
    resolved = ProviderRegistry.default().resolve("2927408")
    assert resolved.config.duplicate_rps_codes == frozenset({"E10", "E160"})
    assert resolved.config.timeout.as_tuple() == (5.0, 60.0)
    assert resolved.config.signature_algorithm == "rsa-sha1"


def test_unknown_municipality_is_a_clear_permanent_error() -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        ProviderRegistry.default().resolve("3550308")
    error = info.value
    assert error.code == "PROVIDER_NOT_CONFIGURED"
    assert error.municipio == "3550308"
    assert "3550308" in error.message
    assert error.body()["error"]["details"][0]["field"] == "municipio"
    assert isinstance(error, LookupError)  # what the issuance service catches


def test_example_entries_never_resolve_in_production() -> None:
    with pytest.raises(ProviderNotConfigured, match="example"):
        ProviderRegistry.default(environment="producao").resolve("4106902")


def test_override_points_every_municipality_at_the_simulator() -> None:
    registry = ProviderRegistry.default(
        environment="homologacao", endpoint_override="http://127.0.0.1:8089/nfse"
    )
    for code in ("3550308", "4106902", "9999999"):
        resolved = registry.resolve(code)
        assert resolved.simulated
        assert resolved.endpoint == "http://127.0.0.1:8089/nfse"
        assert resolved.config.name == "simulador-local"


def test_the_simulator_override_is_refused_in_producao() -> None:
    with pytest.raises(RegistryError, match="producao"):
        ProviderRegistry.default(
            environment="producao", endpoint_override="http://127.0.0.1:8089/nfse"
        )


def test_production_endpoints_must_be_https() -> None:
    """Defect: a production endpoint could be http://, sending signed fiscal documents (and,
    for mutual-TLS providers, the handshake) in clear."""
    raw = json.loads(
        resources.files("nfse_core.providers").joinpath("data/providers.json").read_text()
    )
    entry = next(iter(raw["municipios"].values()))
    entry["endpoints"]["producao"] = entry["endpoints"]["producao"].replace("https:", "http:")
    with pytest.raises(RegistryError, match="producao"):
        parse_registry_data(raw)


def test_settings_refuse_the_simulator_in_producao() -> None:
    env = {
        "INVOICES_TABLE": "t",
        "DOCS_BUCKET": "b",
        "DATABASE_URL": "sqlite:///x.db",
        "PROVIDER_ENVIRONMENT": "producao",
        "PROVIDER_ENDPOINT_OVERRIDE": "http://127.0.0.1:8089/nfse",
    }
    with pytest.raises(SettingsError, match="PROVIDER_ENDPOINT_OVERRIDE"):
        IssuanceSettings.from_env(env)


def test_override_must_be_a_url() -> None:
    with pytest.raises(RegistryError):
        ProviderRegistry.default(endpoint_override="127.0.0.1:8089")


def test_data_file_is_loaded_once_and_only_examples_carry_placeholder_hosts() -> None:
    assert load_default_data() is load_default_data()
    municipios, simulator = load_default_data()
    assert municipios
    for config in municipios.values():
        hosts_invalid = all(
            ".invalid/" in url for url in (config.endpoints.producao, config.endpoints.homologacao)
        )
        assert config.example == hosts_invalid
    assert simulator.endpoints.homologacao.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("municipios", "4106902", "profile"), "nope", "unknown profile"),
        (("municipios", "4106902", "signature_algorithm"), "rsa-md5", "signature_algorithm"),
        (("municipios", "4106902", "duplicate_rps_codes"), [], "duplicate_rps_codes"),
        (("municipios", "4106902", "endpoints", "producao"), "ftp://x", "producao"),
        (("simulator", "soap_version"), "2.0", "soap_version"),
    ],
)
def test_invalid_data_is_refused_at_load(path: tuple[str, ...], value: Any, message: str) -> None:
    raw = copy.deepcopy(_raw())
    node = raw
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(RegistryError, match=message):
        parse_registry_data(raw)


def test_municipality_codes_must_be_ibge_codes() -> None:
    raw = copy.deepcopy(_raw())
    raw["municipios"]["123"] = raw["municipios"]["4106902"]
    with pytest.raises(RegistryError, match="IBGE"):
        parse_registry_data(raw)


def test_client_takes_its_settings_from_the_resolved_provider() -> None:
    resolved = ProviderRegistry.default().resolve("4314902")
    client = AbrasfSoapClient.for_provider(resolved)
    assert client.endpoint == resolved.endpoint
    assert client.timeout == (5.0, 30.0)
    assert client.soap_version == "1.2"
    assert client.duplicate_rps_codes == frozenset({"E10"})
    client.close()
