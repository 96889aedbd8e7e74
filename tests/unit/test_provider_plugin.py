"""The provider plug-in: a standard is found by its name, its document is the one EmitFn stores."""

from __future__ import annotations

from datetime import date

import pytest
from lxml import etree
from pydantic import ValidationError

from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.providers.plugin import (
    DEFAULT_STANDARD,
    document_of,
    major_module_name,
    module_name,
    signing_profile_of,
    standard_key,
)
from nfse_core.providers.registry import ProviderConfig, ProviderRegistry, parse_overlay
from nfse_core.providers.shipped import shipped_data
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes
from nfse_local.samples import invoice_body, nacional_body
from tests import plugin_double


def test_a_standard_names_its_module() -> None:
    assert standard_key("ABRASF", "2.04") == DEFAULT_STANDARD == "abrasf-2.04"
    assert module_name("abrasf-2.04") == "nfse_core.providers.abrasf_2_04"
    assert major_module_name("abrasf-2.02") == "nfse_core.providers.abrasf_2"
    assert module_name("nacional-1.00") == "nfse_core.providers.nacional_1_00"


def test_every_shipped_municipality_has_a_plugin_and_unknown_ones_get_the_default() -> None:
    standard_of = ProviderRegistry.default().standard_of
    registry = ProviderRegistry.default()
    for code in shipped_data()["municipios"]:
        form = registry.form_of(code)
        document = document_of(standard_of(code), "homologacao", form)
        assert document.standard == standard_of(code)
    assert standard_of("9999999") == DEFAULT_STANDARD


def test_a_standard_without_a_module_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match=r"nacional-1\.00"):
        document_of("nacional-1.00")


def test_the_abrasf_document_is_the_builders_validated_document() -> None:
    request = parse_invoice_request(invoice_body())
    rps = RpsIdentity(numero=7, serie="1")
    built = document_of(DEFAULT_STANDARD).build_document(
        request, rps, "01JTESTINVOICE0000000000000", date(2026, 1, 2)
    )
    expected = build_gerar_nfse_envio(
        request, rps, "01JTESTINVOICE0000000000000", emitted_on=date(2026, 1, 2)
    )
    assert built == to_bytes(expected)


def test_the_signing_profile_is_the_registry_entrys() -> None:
    registry = ProviderRegistry.default(environment="homologacao")
    for code in shipped_data()["municipios"]:
        config = registry.resolve(code).config
        profile = signing_profile_of(config)
        assert profile.signature_algorithm == config.signature_algorithm
        assert profile.digest_algorithm == config.digest_algorithm


def test_the_registry_accepts_a_standard_only_with_its_plugin() -> None:
    endpoints = {"producao": "https://a.example/x", "homologacao": "https://b.example/x"}
    config = ProviderConfig(name="p", endpoints=endpoints)
    assert (config.standard, config.version) == ("ABRASF", "2.04")
    with pytest.raises(ValidationError, match=r"no plug-in for ABRASF 1\.00"):
        ProviderConfig(name="p", endpoints=endpoints, version="1.00")


def test_the_standard_of_a_municipality_is_its_registry_entrys() -> None:
    """The deployed registry may map a municipality to another standard: its entry decides
    (the standard of the plug-in EmitFn builds the document with)."""
    with plugin_double.installed():
        overlay = {"schema_version": 1, "municipios": {"4106902": plugin_double.entry("outro")}}
        registry = ProviderRegistry(*parse_overlay(overlay))
        assert registry.standard_of("4106902") == plugin_double.KEY
        assert document_of(registry.standard_of("4106902")).standard == plugin_double.KEY
        assert registry.standard_of("4314902") == DEFAULT_STANDARD
    assert ProviderRegistry.default().standard_of("4106902") == DEFAULT_STANDARD


def test_the_nacional_dps_says_which_environment_it_is_for() -> None:
    """tpAmb 1 in producao, 2 in homologacao: EmitFn builds for its registry's environment."""
    request = parse_invoice_request(nacional_body(), date(2026, 11, 30))
    rps = RpsIdentity(numero=1, serie="1")
    for environment, tp_amb in (("producao", "1"), ("homologacao", "2")):
        standard = document_of("nacional-1.01", environment)
        built = etree.fromstring(standard.build_document(request, rps, "INV", date(2026, 11, 30)))
        assert built.findtext(".//{http://www.sped.fazenda.gov.br/nfse}tpAmb") == tp_amb
    assert document_of("abrasf-2.04", "producao") is document_of("abrasf-2.04")
