"""Provider families in the registry: dialect profiles as data, per-operation URLs, environments
without a service, local mode speaking each family, and the README's coverage table."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from nfse_core.providers.dialect import AbrasfDialect
from nfse_core.providers.registry import (
    ProviderConfig,
    ProviderNotConfigured,
    ProviderRegistry,
    RegistryError,
    load_default_data,
    parse_registry_data,
)
from nfse_core.providers.shipped import municipality_rows, shipped_data
from nfse_local import coverage

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "README.md"
FAMILIES = ("issnet-2.04", "webiss-2.02", "betha-2.02")


def _data(**municipios: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(dict(shipped_data()))
    data["municipios"] = municipios
    return data


def _registry(environment: str = "homologacao", **municipios: dict[str, Any]) -> ProviderRegistry:
    configs, simulator = parse_registry_data(_data(**municipios))
    return ProviderRegistry(configs, simulator, environment=environment)  # type: ignore[arg-type]


ISSNET = {
    "name": "Itaúna/MG",
    "profile": "issnet-2.04",
    "endpoints": {
        "producao": "https://nfse.issnetonline.com.br/abrasf204/itauna/nfse.asmx",
        "homologacao": "https://www.issnetonline.com.br/homologaabrasf/webservicenfse204/nfse.asmx",
    },
}


def test_the_shipped_registry_holds_real_municipalities_of_every_family() -> None:
    municipios, _ = load_default_data()
    per_family = coverage.counts(coverage.entries(municipios))
    # Real municipalities the data knows, GINFES's included (refused by name: no adapter).
    assert len(municipality_rows()) >= 100
    for family in FAMILIES:
        assert per_family[family] >= 10, family
    for code, config in municipios.items():
        urls = [config.endpoints.producao, config.endpoints.homologacao or ""]
        assert not any(".invalid" in url or "example" in url for url in urls), code
        assert not config.example, code
        assert config.source, f"{code} has no source"


def test_every_csv_row_becomes_an_entry_of_its_family() -> None:
    municipios, _ = load_default_data()
    rows = municipality_rows()
    assert rows
    for row in rows:
        if row["ibge"] in shipped_data()["municipios"] and row["ibge"] in municipios:
            assert municipios[row["ibge"]].family in {row["family"], "nacional-1.01"}


def test_a_family_profile_is_its_dialect() -> None:
    resolved = _registry(**{"3133808": ISSNET}).resolve("3133808")
    dialect = resolved.config.dialect
    assert dialect.family == "issnet-2.04"
    call = dialect.call("gerar_nfse")
    assert (call.wrapper, call.soap_action) == ("GerarNfse", "http://nfse.abrasf.org.br/GerarNfse")
    assert dialect.call("consultar_nfse_por_rps").signed
    assert resolved.endpoint.endswith("/homologaabrasf/webservicenfse204/nfse.asmx")


def test_files_written_before_dialects_still_read() -> None:
    entry = {
        **ISSNET,
        "profile": None,
        "namespace": "http://example.org/ws",
        "soap_version": "1.2",
        "soap_action_style": "empty",
    }
    del entry["profile"]
    config = ProviderConfig.model_validate(entry)
    assert config.dialect.wsdl_namespace == "http://example.org/ws"
    assert config.dialect.soap_version == "1.2"
    assert config.dialect.call("gerar_nfse").soap_action == ""
    with pytest.raises(ValueError, match="soap_action_style"):
        ProviderConfig.model_validate({**entry, "soap_action_style": "sometimes"})


def test_the_dialect_version_must_be_the_entry_version() -> None:
    with pytest.raises(RegistryError, match=r"2\.02"):
        parse_registry_data(_data(**{"3133808": {**ISSNET, "version": "2.02"}}))


def test_an_environment_without_a_published_service_is_not_supported() -> None:
    entry = {**ISSNET, "endpoints": {"producao": ISSNET["endpoints"]["producao"]}}
    homologacao = _registry("homologacao", **{"3133808": entry})
    refused = homologacao.refusal("3133808")
    assert refused is not None and refused.code == "MUNICIPALITY_NOT_SUPPORTED"
    assert "issnet-2.04" in refused.message and "homologacao" in refused.message
    with pytest.raises(ProviderNotConfigured):
        homologacao.resolve("3133808")
    producao = _registry("producao", **{"3133808": entry})
    assert producao.resolve("3133808").endpoint == entry["endpoints"]["producao"]


def test_an_unknown_municipality_is_refused_by_name() -> None:
    refused = _registry().refusal("3550308")
    assert refused is not None
    assert refused.status == 422 and refused.code == "MUNICIPALITY_NOT_SUPPORTED"
    assert "3550308" in refused.message and "São Paulo/SP" in refused.message
    assert refused.details[0].field == "municipio"


def test_per_operation_urls_resolve_and_are_held_to_the_egress_rule() -> None:
    per_operation = {
        **ISSNET,
        "operation_endpoints": {
            "consultar_nfse_por_rps": {"producao": "https://consulta.example.com.br/ws"}
        },
    }
    resolved = _registry("producao", **{"3133808": per_operation}).resolve("3133808")
    assert resolved.operation_urls == {
        "consultar_nfse_por_rps": "https://consulta.example.com.br/ws"
    }
    bad = copy.deepcopy(per_operation)
    bad["operation_endpoints"]["consultar_nfse_por_rps"]["producao"] = "https://h.com.br:8443/ws"
    with pytest.raises(RegistryError, match=r"operation_endpoints\.consultar_nfse_por_rps"):
        parse_registry_data(_data(**{"3133808": bad}))


def test_local_mode_sends_each_family_to_the_simulator_under_its_name() -> None:
    configs, simulator = parse_registry_data(_data(**{"3133808": ISSNET}))
    registry = ProviderRegistry(
        configs, simulator, endpoint_override="abrasf-2.04=http://127.0.0.1:8089/nfse"
    )
    resolved = registry.resolve("3133808")
    assert resolved.simulated
    assert resolved.endpoint == "http://127.0.0.1:8089/issnet-2.04/abrasf204/itauna/nfse.asmx"
    assert resolved.config.dialect == configs["3133808"].dialect
    assert resolved.config.timeout == simulator.timeout
    assert resolved.config.settle_seconds == simulator.settle_seconds
    # A municipality the registry does not know: today's plain simulator.
    assert registry.resolve("3550308").endpoint == "http://127.0.0.1:8089/nfse"


def test_local_mode_finds_the_abrasf_simulator_for_every_abrasf_version() -> None:
    webiss = {
        "name": "Feira de Santana/BA",
        "profile": "webiss-2.02",
        "endpoints": {"producao": "https://feiradesantanaba.webiss.com.br/ws/nfse.asmx"},
    }
    configs, simulator = parse_registry_data(_data(**{"2910800": webiss}))
    registry = ProviderRegistry(configs, simulator, endpoint_override="http://127.0.0.1:8089/nfse")
    resolved = registry.resolve("2910800")
    assert resolved.endpoint == "http://127.0.0.1:8089/webiss-2.02/ws/nfse.asmx"
    assert resolved.config.dialect.version == "2.02"


def test_a_municipality_on_a_family_without_an_adapter_is_refused_naming_it() -> None:
    ginfes = [row for row in municipality_rows() if row["family"] == "ginfes-3"]
    assert ginfes
    refused = ProviderRegistry.default().refusal(ginfes[0]["ibge"])
    assert refused is not None and refused.code == "MUNICIPALITY_NOT_SUPPORTED"
    assert "ginfes-3" in refused.message and "no adapter" in refused.message


def test_plain_dialect_is_the_default() -> None:
    assert AbrasfDialect().call("gerar_nfse").wrapper == "GerarNfseRequest"
    assert AbrasfDialect().call("consultar_nfse_por_rps").signed is False


def test_the_readme_coverage_table_is_the_registry_s() -> None:
    text = README.read_text("utf-8")
    start = text.index(coverage.README_START) + len(coverage.README_START)
    end = text.index(coverage.README_END)
    assert text[start:end].strip() == coverage.readme_section(coverage.entries()).strip(), (
        "run: python -m nfse_local admin coverage --write-readme README.md"
    )


def test_the_coverage_command_counts_and_filters(capsys: pytest.CaptureFixture[str]) -> None:
    from nfse_local.__main__ import main  # noqa: PLC0415

    assert main(["admin", "coverage", "--family", "betha-2.02", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    counted = coverage.counts(coverage.entries())["betha-2.02"]
    assert out[-1] == f"total: {counted}"
    assert sum(1 for line in out if "betha-2.02" in line and "producao=" in line) == counted
    assert main(["admin", "coverage", "--family", "no-such-family"]) == 2
