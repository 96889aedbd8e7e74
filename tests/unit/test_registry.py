"""Provider registry: IBGE code -> provider settings, examples, local-mode override."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from nfse_core.config import IssuanceSettings, SettingsError
from nfse_core.providers.abrasf import AbrasfSoapClient
from nfse_core.providers.registry import (
    EGRESS_PORTS,
    ProviderNotConfigured,
    ProviderRegistry,
    RegistryError,
    egress_problem,
    load_default_data,
    parse_overlay,
    parse_overlay_text,
    parse_registry_data,
)
from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit


# Entries of the kinds a deployment writes (the shipped data holds only real municipalities):
# an example (placeholder hosts, never in producao), SOAP 1.2 with SHA-256, and an entry
# overriding its profile's codes and timeout.
EXAMPLES: dict[str, dict[str, Any]] = {
    "4106902": {
        "name": "exemplo-abrasf-2.04-curitiba-pr",
        "profile": "abrasf-2.04",
        "example": True,
        "endpoints": {
            "producao": "https://nfse.curitiba-pr.example.invalid/abrasf204/nfse.asmx",
            "homologacao": "https://homologacao.nfse.curitiba-pr.example.invalid/abrasf204/nfse.asmx",
        },
    },
    "4314902": {
        "name": "porto-alegre-rs",
        "profile": "abrasf-2.04-sha256-soap12",
        "endpoints": {
            "producao": "https://nfse.portoalegre-rs.example.invalid/abrasf204/nfse",
            "homologacao": "https://homologacao.nfse.portoalegre-rs.example.invalid/abrasf204/nfse",
        },
    },
    "2927408": {
        "name": "salvador-ba",
        "profile": "abrasf-2.04",
        "duplicate_rps_codes": ["E10", "E160"],
        "timeout": {"connect": 5.0, "read": 60.0},
        "endpoints": {
            "producao": "https://nfse.salvador-ba.example.invalid/abrasf204/nfse.asmx",
            "homologacao": "https://homologacao.nfse.salvador-ba.example.invalid/abrasf204/nfse.asmx",
        },
    },
}


def _raw() -> dict[str, Any]:
    text = resources.files("nfse_core.providers").joinpath("data/providers.json").read_text()
    data: dict[str, Any] = json.loads(text)
    data["municipios"] = {**copy.deepcopy(EXAMPLES), **data["municipios"]}
    return data


def _examples(environment: str = "homologacao", **options: Any) -> ProviderRegistry:
    municipios, simulator = parse_overlay({"schema_version": 1, "municipios": EXAMPLES})
    return ProviderRegistry(municipios, simulator, environment=environment, **options)  # type: ignore[arg-type]


def test_known_municipality_resolves_with_its_profile() -> None:
    registry = _examples(environment="homologacao")
    resolved = registry.resolve("4314902")
    assert resolved.config.signature_algorithm == "rsa-sha256"
    assert resolved.config.digest_algorithm == "sha256"
    assert resolved.config.dialect.soap_version == "1.2"
    assert resolved.endpoint == resolved.config.endpoints.homologacao
    assert not resolved.simulated


def test_entry_overrides_its_profile() -> None:
    resolved = _examples().resolve("2927408")
    assert resolved.config.duplicate_rps_codes == frozenset({"E10", "E160"})
    assert resolved.config.timeout.as_tuple() == (5.0, 60.0)
    assert resolved.config.signature_algorithm == "rsa-sha1"


def test_unknown_municipality_is_a_clear_permanent_error() -> None:
    with pytest.raises(ProviderNotConfigured) as info:
        ProviderRegistry.default().resolve("3550308")
    error = info.value
    assert error.code == "MUNICIPALITY_NOT_SUPPORTED"
    assert error.municipio == "3550308"
    assert "3550308" in error.message
    assert error.body()["error"]["details"][0]["field"] == "municipio"
    assert isinstance(error, LookupError)  # what the issuance service catches


def test_example_entries_never_resolve_in_production() -> None:
    with pytest.raises(ProviderNotConfigured, match="example"):
        _examples(environment="producao").resolve("4106902")


def test_override_points_every_municipality_at_the_simulator() -> None:
    registry = ProviderRegistry.default(
        environment="homologacao", endpoint_override="http://127.0.0.1:8089/nfse"
    )
    for code in ("3550308", "9999999"):
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
    raw = _raw()
    entry = raw["municipios"]["4106902"]
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
    resolved = _examples().resolve("4314902")
    client = AbrasfSoapClient.for_provider(resolved)
    assert client.endpoint == resolved.endpoint
    assert client.timeout == (5.0, 30.0)
    assert client.dialect.soap_version == "1.2"
    assert client.duplicate_rps_codes == frozenset({"E10"})
    client.close()


# ------------------------------------------------------ egress and the deployed overlay ----

ROOT = Path(__file__).resolve().parents[2]


def _overlay(**entry: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "homologacao-3550308",
        "profile": "abrasf-2.04",
        "endpoints": {
            "producao": "https://nfse.example.gov.br/abrasf/nfse.asmx",
            "homologacao": "https://homologacao.example.gov.br/abrasf/nfse.asmx",
        },
    }
    return {"schema_version": 1, "municipios": {"3550308": base | entry}}


@pytest.mark.parametrize(
    ("environment", "url", "message"),
    [
        ("homologacao", "http://homologacao.example.gov.br/nfse", "https"),
        ("homologacao", "https://homologacao.example.gov.br:8443/nfse", "port 8443"),
        ("producao", "https://nfse.example.gov.br:444/nfse", "port 444"),
        ("producao", "https://:443/nfse", "no host"),
    ],
)
def test_endpoints_outside_the_egress_are_refused_naming_the_entry_and_field(
    environment: str, url: str, message: str
) -> None:
    """Defect: egress is HTTPS on 443 only, while the registry took any URL (a homologacao
    server on http or on :8443 validated, and every call to it timed out in AWS)."""
    raw = _overlay()
    raw["municipios"]["3550308"]["endpoints"][environment] = url
    with pytest.raises(RegistryError, match=message) as info:
        parse_overlay(raw)
    assert f"municipios.3550308.endpoints.{environment}" in str(info.value)


def test_an_explicit_port_443_is_the_egress_port() -> None:
    raw = _overlay()
    raw["municipios"]["3550308"]["endpoints"]["producao"] = "https://nfse.example.gov.br:443/n"
    municipios, _ = parse_overlay(raw)
    assert municipios["3550308"].endpoints.producao.endswith(":443/n")
    assert frozenset({443}) == EGRESS_PORTS


def test_the_local_simulator_entry_is_exempt_from_the_egress_rule() -> None:
    """It answers on loopback over http, and only with the override (refused in producao)."""
    _, simulator = load_default_data()
    assert egress_problem(simulator.endpoints.homologacao) is not None
    registry = ProviderRegistry.default(endpoint_override="http://127.0.0.1:8089/nfse")
    assert registry.resolve("3550308").simulated


def test_every_shipped_municipality_is_reachable_through_the_egress() -> None:
    municipios, _ = load_default_data()
    for config in municipios.values():
        for url in (config.endpoints.producao, config.endpoints.homologacao):
            assert egress_problem(url) is None, url


def _egress_ports(resource: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for rule in resource["Properties"]["SecurityGroupEgress"]:
        assert rule["IpProtocol"] == "tcp", rule
        ports |= set(range(int(rule["FromPort"]), int(rule["ToPort"]) + 1))
    return ports


@pytest.mark.parametrize("group", ["WorkerSecurityGroup", "ProcessorSecurityGroup"])
def test_the_security_groups_let_out_exactly_the_ports_the_registry_allows(group: str) -> None:
    """The registry and the egress agree by test: a port added to one and not the other fails."""
    resources = load_template(ROOT / "template.yaml")["Resources"]
    assert _egress_ports(resources[group]) == set(EGRESS_PORTS)


def test_an_overlay_adds_and_replaces_municipalities_over_the_shipped_ones() -> None:
    raw = _overlay()
    raw["municipios"].update(copy.deepcopy(EXAMPLES))
    raw["municipios"]["2927408"] = {
        "name": "salvador-real",
        "profile": "abrasf-2.04-sha256-soap12",
        "endpoints": {
            "producao": "https://nfse.salvador.example.gov.br/ws",
            "homologacao": "https://hom.salvador.example.gov.br/ws",
        },
    }
    municipios, simulator = parse_overlay(raw)
    assert municipios["3550308"].name == "homologacao-3550308"
    assert municipios["2927408"].name == "salvador-real"  # replaced whole: no 60 s timeout
    assert municipios["2927408"].timeout.as_tuple() == (5.0, 30.0)
    assert "4106902" in municipios  # shipped, untouched
    assert simulator == load_default_data()[1]
    registry = ProviderRegistry(municipios, simulator, environment="producao")
    assert registry.resolve("3550308").endpoint == "https://nfse.example.gov.br/abrasf/nfse.asmx"


def test_an_overlay_may_bring_its_own_profiles() -> None:
    raw = _overlay(profile="mine")
    raw["profiles"] = {"mine": {"signature_algorithm": "rsa-sha256", "digest_algorithm": "sha256"}}
    municipios, _ = parse_overlay(raw)
    assert municipios["3550308"].signature_algorithm == "rsa-sha256"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "JSON object"),
        ("{", "not JSON"),
        ('{"schema_version": 2, "municipios": {}}', "schema_version"),
        ('{"schema_version": 1}', "municipios"),
        ('{"schema_version": 1, "municipios": {"355030": {}}}', "IBGE"),
        ('{"schema_version": 1, "municipios": {}, "simulator": {}}', "simulator"),
        ('{"schema_version": 1, "municipios": {"3550308": {"profile": "x"}}}', "unknown profile"),
    ],
)
def test_an_invalid_overlay_is_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_overlay_text(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", {"connect": 31.0, "read": 30.0}),
        ("timeout", {"connect": 5.0, "read": 121.0}),
        ("settle_seconds", 301.0),
    ],
)
def test_provider_times_are_bounded_so_a_dlq_message_fits_processor_fn(
    field: str, value: Any
) -> None:
    """Defect: a read timeout of up to 300 s and a settle time of up to an hour validated;
    ProcessorFn could then never finish one message of that provider."""
    with pytest.raises(RegistryError, match=field):
        parse_overlay(_overlay(**{field: value}))


def test_the_readme_example_registry_file_validates() -> None:
    text = (ROOT / "docs" / "providers.example.json").read_bytes()
    municipios, _ = parse_overlay_text(text)
    example = json.loads(text)
    (code,) = example["municipios"]
    assert municipios[code].example  # placeholders never resolve in producao
    resolved = ProviderRegistry(municipios, load_default_data()[1]).resolve(code)
    assert egress_problem(resolved.endpoint) is None


NACIONAL_OVERLAY = {
    "schema_version": 1,
    "municipios": {"2611606": {"name": "recife-pe-nacional", "profile": "nacional-1.01"}},
}
BOTH = "abrasf-2.04=http://127.0.0.1:8089/nfse,nacional-1.01=https://127.0.0.1:8090/SefinNacional"


def test_the_nacional_profile_points_at_the_sefin_of_each_environment() -> None:
    municipios, simulator = parse_overlay(NACIONAL_OVERLAY)
    for environment, url in (
        ("producao", "https://sefin.nfse.gov.br/SefinNacional"),
        ("homologacao", "https://sefin.producaorestrita.nfse.gov.br/SefinNacional"),
    ):
        registry = ProviderRegistry(municipios, simulator, environment=environment)
        resolved = registry.resolve("2611606")
        assert resolved.endpoint == url
        assert resolved.config.client_certificate
        assert registry.standard_of("2611606") == "nacional-1.01"


def test_local_mode_sends_each_municipality_to_its_standard_s_simulator() -> None:
    municipios, simulator = parse_overlay(NACIONAL_OVERLAY)
    registry = ProviderRegistry(municipios, simulator, endpoint_override=BOTH)
    nacional = registry.resolve("2611606")
    abrasf = registry.resolve("3550308")  # unknown to the registry: the default standard
    assert (nacional.endpoint, nacional.config.standard) == (
        "https://127.0.0.1:8090/SefinNacional",
        "NACIONAL",
    )
    assert (abrasf.endpoint, abrasf.config.standard) == ("http://127.0.0.1:8089/nfse", "ABRASF")
    assert nacional.simulated and abrasf.simulated


def test_local_mode_without_a_standard_s_simulator_names_it() -> None:
    municipios, simulator = parse_overlay(NACIONAL_OVERLAY)
    registry = ProviderRegistry(municipios, simulator, endpoint_override="http://127.0.0.1:1/nfse")
    assert registry.resolve("3550308").endpoint == "http://127.0.0.1:1/nfse"
    with pytest.raises(ProviderNotConfigured, match=r"no local simulator for nacional-1\.01"):
        registry.resolve("2611606")


@pytest.mark.parametrize("text", ["abrasf-2.04=", "=http://x", "abrasf-2.04=http://x,junk"])
def test_a_malformed_override_list_is_refused(text: str) -> None:
    with pytest.raises(RegistryError):
        ProviderRegistry.default(endpoint_override=text)
