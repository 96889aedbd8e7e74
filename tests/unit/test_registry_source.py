"""The deployed registry: the overlay from S3 over the shipped data, re-read after its TTL, and a
bad upload reported and ignored (the last good registry stays)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfse_core.bootstrap import deployed_registry, provider_registry
from nfse_core.config import ApiSettings, IssuanceSettings, SettingsError
from nfse_core.providers.plugin import DEFAULT_STANDARD
from nfse_core.providers.registry import ProviderNotConfigured, ProviderRegistry
from nfse_core.providers.registry_source import (
    DEFAULT_OBJECT_KEY,
    REGISTRY_REFUSED_LOG,
    LiveRegistry,
    S3RegistryObject,
)
from nfse_core.store.aws import AwsClients
from nfse_local.cfn import load_template
from tests import plugin_double

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
NEW = "3550308"


def overlay(name: str = "sao-paulo-homologacao", **entry: Any) -> bytes:
    base: dict[str, Any] = {
        "name": name,
        "profile": "abrasf-2.04",
        "endpoints": {
            "producao": "https://nfse.example.gov.br/ws",
            "homologacao": "https://homologacao.example.gov.br/ws",
        },
    }
    return json.dumps({"schema_version": 1, "municipios": {NEW: base | entry}}).encode()


class Source:
    """The overlay object as a list of answers: bytes, None (no object) or an exception."""

    def __init__(self, *answers: bytes | Exception | None) -> None:
        self.answers = list(answers)
        self.reads = 0

    def read(self) -> bytes | None:
        self.reads += 1
        answer = self.answers[min(self.reads, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def live(source: Source, clock: Clock, ttl: float = 300.0) -> LiveRegistry:
    return LiveRegistry(source, environment="homologacao", ttl_seconds=ttl, monotonic=clock)


def test_no_object_means_the_shipped_registry() -> None:
    registry = live(Source(None), Clock())
    with pytest.raises(ProviderNotConfigured):
        registry.resolve(NEW)
    assert registry.resolve("3133808").config.family == "issnet-2.04"
    assert registry.origin == "shipped"


def test_an_uploaded_municipality_resolves_without_a_rebuild() -> None:
    """Defect: the registry was baked into the layer and the image; a new municipality meant
    rebuilding both (and the README's 3550308 ended FAILED, PROVIDER_NOT_CONFIGURED)."""
    registry = live(Source(overlay()), Clock())
    resolved = registry.resolve(NEW)
    assert resolved.config.name == "sao-paulo-homologacao"
    assert resolved.endpoint == "https://homologacao.example.gov.br/ws"
    assert registry.origin == "overlay"


def test_the_object_is_read_again_only_after_the_ttl() -> None:
    clock = Clock()
    source = Source(None, overlay())
    registry = live(source, clock, ttl=300)
    with pytest.raises(ProviderNotConfigured):
        registry.resolve(NEW)
    clock.now += 299
    with pytest.raises(ProviderNotConfigured):
        registry.resolve(NEW)
    assert source.reads == 1
    clock.now += 1
    assert registry.resolve(NEW).config.name == "sao-paulo-homologacao"
    assert source.reads == 2


@pytest.mark.parametrize(
    "bad",
    [
        b"{not json",
        overlay(endpoints={"producao": "https://a.gov.br/", "homologacao": "http://b.gov.br/"}),
        RuntimeError("AccessDenied"),
    ],
    ids=["not-json", "outside-the-egress", "unreadable"],
)
def test_a_bad_upload_is_loud_and_the_last_good_registry_stays(
    bad: bytes | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    registry = live(Source(overlay(), bad), clock)
    assert registry.resolve(NEW).config.name == "sao-paulo-homologacao"
    clock.now += 300
    with caplog.at_level(logging.ERROR):
        resolved = registry.resolve(NEW)  # never raises: invoices go on
    assert resolved.config.name == "sao-paulo-homologacao"
    refusals = [r for r in caplog.records if r.getMessage() == REGISTRY_REFUSED_LOG]
    assert len(refusals) == 1
    assert refusals[0].__dict__["kept"] == "overlay"
    # Reported once per period, not per invoice.
    registry.resolve(NEW)
    assert len([r for r in caplog.records if r.getMessage() == REGISTRY_REFUSED_LOG]) == 1


def test_a_bad_first_upload_keeps_the_shipped_registry(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        registry = live(Source(b"[]"), Clock())
        assert registry.resolve("3133808").municipio == "3133808"
    assert [r.getMessage() for r in caplog.records].count(REGISTRY_REFUSED_LOG) == 1
    assert registry.origin == "shipped"


@pytest.mark.parametrize("log_group", ["EmitFnLogGroup", "WorkerLogGroup", "ProcessorFnLogGroup"])
def test_refusals_are_counted_by_a_metric_filter_and_alarmed(log_group: str) -> None:
    resources = load_template(ROOT / "template.yaml")["Resources"]
    filters = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Logs::MetricFilter"
        and r["Properties"]["LogGroupName"] == {"Ref": log_group}
        and REGISTRY_REFUSED_LOG in r["Properties"]["FilterPattern"]
    ]
    (refusals,) = filters
    (transformation,) = refusals["MetricTransformations"]
    assert transformation["MetricName"] == "ProviderRegistryRefused"
    alarms = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"].get("MetricName") == "ProviderRegistryRefused"
    ]
    assert len(alarms) == 1 and alarms[0]["AlarmActions"]
    assert yaml.safe_dump(refusals)


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("list_objects_v2", kwargs))
        keys = sorted(k for k in self.objects if k.startswith(kwargs["Prefix"]))
        return {"Contents": [{"Key": k} for k in keys[: kwargs["MaxKeys"]]]} if keys else {}

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("get_object", kwargs))

        class Body:
            def read(inner) -> bytes:
                return self.objects[kwargs["Key"]]

        return {"Body": Body()}


def test_the_s3_object_is_listed_by_its_own_key_before_it_is_read() -> None:
    """The roles may list only that key (s3:prefix): a GetObject of a missing key without
    s3:ListBucket is a 403, which must not read as "no overlay"."""
    s3 = FakeS3({f"{DEFAULT_OBJECT_KEY}.bak": b"old"})
    source = S3RegistryObject(s3, "docs", DEFAULT_OBJECT_KEY)
    assert source.read() is None  # a longer key with the same prefix is not the object
    assert [c[0] for c in s3.calls] == ["list_objects_v2"]
    assert s3.calls[0][1]["Prefix"] == DEFAULT_OBJECT_KEY
    s3.objects[DEFAULT_OBJECT_KEY] = b"{}"
    assert source.read() == b"{}"


BASE_ENV = {"INVOICES_TABLE": "t", "DOCS_BUCKET": "docs", "DATABASE_URL": "sqlite:///x.db"}


def test_settings_name_the_object_and_its_cache_time() -> None:
    settings = IssuanceSettings.from_env(BASE_ENV)
    assert settings.providers_object_key == ""
    assert settings.providers_cache_seconds == 300.0
    settings = IssuanceSettings.from_env(
        BASE_ENV | {"PROVIDERS_OBJECT_KEY": DEFAULT_OBJECT_KEY, "PROVIDERS_CACHE_SECONDS": "60"}
    )
    assert settings.providers_object_key == DEFAULT_OBJECT_KEY
    assert settings.providers_cache_seconds == 60.0
    for bad in ({"PROVIDERS_OBJECT_KEY": "/abs.json"}, {"PROVIDERS_CACHE_SECONDS": "0"}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            IssuanceSettings.from_env(BASE_ENV | bad)


def test_a_deployed_entry_picks_the_standard_and_a_refused_upload_keeps_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EmitFn builds the document of the standard this names: the deployed entry's, kept
    through a refused upload as the provider it resolves is; unknown municipalities get the
    default (the worker fails them as not configured)."""
    clock = Clock()
    with plugin_double.installed():
        deployed = {"schema_version": 1, "municipios": {NEW: plugin_double.entry("outro")}}
        registry = live(Source(json.dumps(deployed).encode(), b"{not json"), clock)
        assert registry.standard_of(NEW) == plugin_double.KEY
        clock.now += 300
        with caplog.at_level(logging.ERROR):
            assert registry.standard_of(NEW) == plugin_double.KEY
        assert [r.getMessage() for r in caplog.records].count(REGISTRY_REFUSED_LOG) == 1
        assert registry.standard_of("9999999") == DEFAULT_STANDARD
    assert live(Source(None), Clock()).standard_of(NEW) == DEFAULT_STANDARD


API_ENV = {
    "INVOICES_TABLE": "t",
    "IDEMPOTENCY_TABLE": "i",
    "TENANTS_TABLE": "te",
    "RPS_COUNTERS_TABLE": "c",
    "DOCS_BUCKET": "docs",
    "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
}


def test_emit_fn_reads_the_overlay_when_named() -> None:
    clients = AwsClients()
    settings = ApiSettings.from_env(API_ENV)
    assert (settings.providers_object_key, settings.providers_cache_seconds) == ("", 300.0)
    assert isinstance(deployed_registry(settings, clients), ProviderRegistry)
    named = ApiSettings.from_env(
        API_ENV | {"PROVIDERS_OBJECT_KEY": DEFAULT_OBJECT_KEY, "PROVIDERS_CACHE_SECONDS": "60"}
    )
    assert isinstance(deployed_registry(named, clients), LiveRegistry)


def test_the_wiring_reads_the_overlay_only_when_named_also_with_the_simulators() -> None:
    clients = AwsClients()
    named = IssuanceSettings.from_env(BASE_ENV | {"PROVIDERS_OBJECT_KEY": DEFAULT_OBJECT_KEY})
    assert isinstance(provider_registry(named, clients), LiveRegistry)
    assert isinstance(
        provider_registry(IssuanceSettings.from_env(BASE_ENV), clients), ProviderRegistry
    )
    # Local mode reads the overlay too: it says which standard, so which simulator, answers
    # for each municipality.
    local = IssuanceSettings.from_env(
        BASE_ENV
        | {"PROVIDERS_OBJECT_KEY": DEFAULT_OBJECT_KEY, "PROVIDER_ENDPOINT_OVERRIDE": "http://x/"}
    )
    registry = provider_registry(local, clients)
    assert isinstance(registry, LiveRegistry)
    unread = provider_registry(
        IssuanceSettings.from_env(BASE_ENV | {"PROVIDER_ENDPOINT_OVERRIDE": "http://x/"}), clients
    )
    assert isinstance(unread, ProviderRegistry)
    assert unread.resolve("3550308").endpoint == "http://x/"


@pytest.mark.parametrize("component", ["EmitFn", "ProcessorFn", "WorkerTaskDefinition"])
def test_the_template_names_the_object_its_roles_may_read_and_list(component: str) -> None:
    template = load_template(ROOT / "template.yaml")
    resources = template["Resources"]
    if component != "WorkerTaskDefinition":
        env = resources[component]["Properties"]["Environment"]["Variables"]
        statements = [
            s
            for p in resources[component]["Properties"]["Policies"]
            for s in p.get("Statement", [])
        ]
    else:
        (container,) = resources[component]["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        statements = [
            s
            for p in resources["WorkerTaskRole"]["Properties"]["Policies"]
            for s in p["PolicyDocument"]["Statement"]
        ]
    key = env["PROVIDERS_OBJECT_KEY"]
    assert key == DEFAULT_OBJECT_KEY
    IssuanceSettings.from_env(BASE_ENV | {"PROVIDERS_OBJECT_KEY": key})
    by_sid = {s.get("Sid"): s for s in statements}
    assert by_sid["ProvidersRegistry"]["Action"] == "s3:GetObject"
    assert by_sid["ProvidersRegistry"]["Resource"] == {"Fn::Sub": f"${{DocsBucket.Arn}}/{key}"}
    listing = by_sid["ProvidersRegistryExists"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {"StringEquals": {"s3:prefix": key}}
