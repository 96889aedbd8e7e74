"""Which provider serves a municipality: IBGE code -> provider settings (data/providers.json).

The data file is declarative: shared `profiles` (standard, algorithms, SOAP style, duplicate-RPS
codes, timeouts) and `municipios` that name a profile, their endpoints and any override. The
shipped file is read and validated once per process; a deployment adds or replaces
municipalities with an overlay (same shape, `municipios` and optional `profiles`, read from S3 by
nfse_core.providers.registry_source) validated by the same code. Entries marked `example` carry
placeholder endpoints (`.invalid` hosts) and never resolve in production. With an endpoint
override (local mode), every municipality resolves to the `simulator` entry pointed at that URL.

Every municipality's endpoints, homologacao included, are `https://` on port 443
(EGRESS_PORTS): the worker's and ProcessorFn's security groups allow nothing else out, and a
test holds the two equal. Timeouts and settle time are bounded so that one DLQ message of the
slowest provider the registry accepts fits ProcessorFn's timeout (nfse_core.services.reprocess).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nfse_core.domain.errors import FieldError, NfseError
from nfse_core.providers.dialect import ABRASF_WSDL_NS, PLAIN_ABRASF_2_04, AbrasfDialect
from nfse_core.providers.plugin import DEFAULT_STANDARD, plugin_exists, standard_key
from nfse_core.providers.shipped import shipped_data, unsupported_families
from nfse_core.xml.forms import DocumentForm
from nfse_core.xml.signature_names import DigestAlgorithmName, SignatureAlgorithmName

Environment = Literal["producao", "homologacao"]
__all__ = ["ABRASF_WSDL_NS"]
# TCP ports a municipality's endpoint may use: what the worker's and ProcessorFn's security
# groups let out (template.yaml; tests/unit/test_registry.py holds them equal).
EGRESS_PORTS = frozenset({443})
# The bounds of a provider's timeouts and settle time: one DLQ message of the slowest provider
# these allow must fit ProcessorFn's timeout (tests/unit/test_reprocess_sizing.py).
MAX_CONNECT_SECONDS = 30.0
MAX_READ_SECONDS = 120.0
MAX_SETTLE_SECONDS = 300.0


class ProviderNotConfigured(NfseError, LookupError):
    """No provider is configured for the municipality: permanent until someone adds one.

    The API answers it as 422 MUNICIPALITY_NOT_SUPPORTED: no adapter this deployment has covers
    the municipality (it is not in the registry, or its entry cannot serve this environment)."""

    def __init__(
        self,
        municipio: str,
        reason: str = "no NFS-e provider this deployment supports serves it",
    ) -> None:
        message = f"municipality {municipio}{_named(municipio)}: {reason}"
        super().__init__(
            message, [FieldError("municipio", message)], "MUNICIPALITY_NOT_SUPPORTED", 422
        )
        self.municipio = municipio


def _named(municipio: str) -> str:
    """ " (Name/UF)" for an IBGE code of the official list, "" otherwise."""
    from nfse_core.domain import places  # noqa: PLC0415 - the list is read only for a refusal

    place = places.municipality(municipio)
    return f" ({place.name}/{place.uf})" if place is not None else ""


class RegistryError(RuntimeError):
    """The provider data file is invalid; raised at load, never half-used."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Endpoints(_Frozen):
    # Production traffic carries signed fiscal documents and, for mutual-TLS providers, the
    # company's certificate handshake: never in clear. Municipalities are further held to
    # https on port 443 (egress_problem); only the local simulator's homologacao URL is http.
    # A municipality whose provider publishes no homologação service has none (None).
    producao: str = Field(pattern=r"^https://")
    homologacao: str | None = Field(default=None, pattern=r"^https?://")


class Timeout(_Frozen):
    connect: float = Field(default=5.0, gt=0, le=MAX_CONNECT_SECONDS)
    read: float = Field(default=30.0, gt=0, le=MAX_READ_SECONDS)

    def as_tuple(self) -> tuple[float, float]:
        return (self.connect, self.read)


class ProviderConfig(_Frozen):
    """Everything the SOAP client and the signer need to talk to one municipality."""

    name: str = Field(min_length=1)
    # The fiscal standard and its version: a plug-in module must exist for them
    # (nfse_core.providers.plugin; ABRASF 2.0x -> nfse_core.providers.abrasf_2).
    standard: str = Field(default="ABRASF", min_length=1)
    version: str = Field(default="2.04", min_length=1)
    endpoints: Endpoints
    # Operations a family serves at a URL of their own (Betha's per-operation services): their
    # URLs, in place of `endpoints`, for those operations.
    operation_endpoints: dict[str, Endpoints] = Field(default_factory=dict)
    # How an ABRASF family talks (nfse_core.providers.dialect); plain ABRASF 2.04 by default.
    dialect: AbrasfDialect = PLAIN_ABRASF_2_04
    signature_algorithm: SignatureAlgorithmName = "rsa-sha1"
    digest_algorithm: DigestAlgorithmName = "sha1"
    duplicate_rps_codes: frozenset[str] = frozenset({"E10"})
    # ConsultarNfsePorRps messages that mean "this RPS is not in our base". Only an answer made
    # of these alone proves nothing was issued (ABRASF error table: E4 "Esse RPS não foi enviado
    # para a nossa base de dados"); any other message beside them leaves it undecided.
    rps_not_found_codes: frozenset[str] = frozenset({"E4"})
    # How long after a send the consult may still not show its NFS-e (providers that process
    # asynchronously or read a replica). A "not found" counts only after this.
    settle_seconds: float = Field(default=60.0, ge=0, le=MAX_SETTLE_SECONDS)
    timeout: Timeout = Timeout()
    # The web service authenticates the TLS connection with the prestador's A1 certificate.
    client_certificate: bool = False
    example: bool = False
    notes: str = ""
    # Where the entry's facts come from (repository@commit path, or URL) and when they were read.
    source: str = ""
    updated: str = ""

    @model_validator(mode="before")
    @classmethod
    def _legacy_soap_keys(cls, data: Any) -> Any:
        """Registry files written before dialects name the SOAP settings at the top level
        (namespace, soap_version, soap_action_style): read them into the dialect."""
        if not isinstance(data, Mapping):
            return data
        legacy = {
            k: data[k] for k in ("namespace", "soap_version", "soap_action_style") if k in data
        }
        if not legacy:
            return data
        fields = {k: v for k, v in data.items() if k not in legacy}
        dialect = dict(fields.get("dialect") or {})
        if "namespace" in legacy:
            dialect.setdefault("wsdl_namespace", legacy["namespace"])
        if "soap_version" in legacy:
            dialect.setdefault("soap_version", legacy["soap_version"])
        style = legacy.get("soap_action_style")
        if style is not None:
            actions = {"operation": "{namespace}/{operation}", "empty": "", "none": None}
            if style not in actions:
                raise ValueError(f"soap_action_style must be one of {sorted(actions)}")
            dialect.setdefault("soap_action", actions[style])
        fields["dialect"] = dialect
        return fields

    @property
    def family(self) -> str:
        """The provider family (its dialect's name for ABRASF; the standard key otherwise)."""
        if self.standard.upper() == "ABRASF":
            return self.dialect.family
        return standard_key(self.standard, self.version)

    @field_validator("duplicate_rps_codes", "rps_not_found_codes")
    @classmethod
    def _codes_not_empty(cls, value: frozenset[str]) -> frozenset[str]:
        if not value or any(not code.strip() for code in value):
            raise ValueError("needs at least one non-empty code")
        return value

    @model_validator(mode="after")
    def _standard_has_a_plugin(self) -> ProviderConfig:
        if not plugin_exists(standard_key(self.standard, self.version)):
            raise ValueError(f"no plug-in for {self.standard} {self.version}")
        if self.standard.upper() == "ABRASF" and self.dialect.version != self.version:
            raise ValueError(
                f"the dialect writes ABRASF {self.dialect.version} documents, the entry says "
                f"version {self.version}"
            )
        return self

    def endpoint(self, environment: Environment) -> str | None:
        """The service URL for `environment`; None when none is published for it."""
        return self.endpoints.producao if environment == "producao" else self.endpoints.homologacao

    def operation_urls(self, environment: Environment) -> dict[str, str]:
        """The operations served at URLs of their own, for `environment`."""
        urls = {
            op: ends.producao if environment == "producao" else ends.homologacao
            for op, ends in self.operation_endpoints.items()
        }
        return {op: url for op, url in urls.items() if url is not None}


class ResolvedProvider(_Frozen):
    """The provider for one municipality in one environment: its settings and the URL to call."""

    municipio: str
    environment: Environment
    endpoint: str
    config: ProviderConfig
    simulated: bool = False
    # Operations the provider serves at URLs of their own (ProviderConfig.operation_endpoints).
    operation_urls: dict[str, str] = Field(default_factory=dict)


def _ibge_codes(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    bad = [code for code in value if len(code) != 7 or not code.isdigit()]
    if bad:
        raise ValueError(f"not 7-digit IBGE codes: {bad}")
    return value


class _DataFile(_Frozen):
    schema_version: Literal[1]
    profiles: dict[str, dict[str, Any]]
    municipios: dict[str, dict[str, Any]]
    simulator: dict[str, Any]
    # The local simulators of the other standards, by plug-in key (nacional-1.01): `simulator`
    # is the default standard's.
    simulators: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _codes = field_validator("municipios")(_ibge_codes)


class _OverlayFile(_Frozen):
    """A deployment's registry: municipalities (and profiles) over the shipped ones. The
    simulator is local-only and cannot be changed here."""

    schema_version: Literal[1]
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    municipios: dict[str, dict[str, Any]]

    _codes = field_validator("municipios")(_ibge_codes)


def egress_problem(url: str) -> str | None:
    """Why the worker could not reach `url` through its security group, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme != "https":
        return f"must be https:// (egress is HTTPS on port {sorted(EGRESS_PORTS)[0]} only)"
    if not parts.hostname:
        return "has no host"
    if (port or 443) not in EGRESS_PORTS:
        allowed = ", ".join(str(p) for p in sorted(EGRESS_PORTS))
        return f"port {port} is not one the egress allows ({allowed}): drop the port or use 443"
    return None


def _merge(
    profiles: Mapping[str, Mapping[str, Any]], entry: Mapping[str, Any], where: str
) -> ProviderConfig:
    fields = dict(entry)
    profile_name = fields.pop("profile", None)
    merged: dict[str, Any] = {}
    if profile_name is not None:
        if profile_name not in profiles:
            raise RegistryError(f"{where}: unknown profile {profile_name!r}")
        merged.update(profiles[profile_name])
    merged.update(fields)
    try:
        return ProviderConfig.model_validate(merged)
    except ValidationError as exc:
        raise RegistryError(f"{where}: {exc}") from exc


def _municipality(
    profiles: Mapping[str, Mapping[str, Any]], code: str, entry: Mapping[str, Any]
) -> ProviderConfig:
    where = f"municipios.{code}"
    config = _merge(profiles, entry, where)
    places = {"endpoints": config.endpoints} | {
        f"operation_endpoints.{op}": ends for op, ends in config.operation_endpoints.items()
    }
    for name, endpoints in places.items():
        for environment in ("producao", "homologacao"):
            url = getattr(endpoints, environment)
            problem = None if url is None else egress_problem(url)
            if problem:
                raise RegistryError(f"{where}.{name}.{environment}: {problem}")
    return config


RegistryData = tuple[dict[str, ProviderConfig], ProviderConfig]


def parse_registry_data(raw: Mapping[str, Any]) -> RegistryData:
    """Validate the data file: (municipality -> config, simulator config)."""
    try:
        data = _DataFile.model_validate(raw)
    except ValidationError as exc:
        raise RegistryError(f"providers.json: {exc}") from exc
    municipios = {
        code: _municipality(data.profiles, code, entry) for code, entry in data.municipios.items()
    }
    # The simulator is exempt from the egress rule: it answers on loopback, in local mode only
    # (ProviderRegistry refuses the override in producao).
    return municipios, _merge(data.profiles, data.simulator, "simulator")


@cache
def load_default_data() -> RegistryData:
    """The packaged providers.json, read and validated once per process."""
    return parse_registry_data(shipped_data())


@cache
def load_simulators() -> dict[str, ProviderConfig]:
    """The local simulator of each standard (plug-in key -> config), from the packaged file:
    its `simulator` for the default standard and its `simulators` for the others."""
    data = _DataFile.model_validate(shipped_data())
    configs = {
        key: _merge(data.profiles, entry, f"simulators.{key}")
        for key, entry in data.simulators.items()
    }
    default = load_default_data()[1]
    configs.setdefault(standard_key(default.standard, default.version), default)
    return configs


def parse_overrides(text: str) -> dict[str, str]:
    """PROVIDER_ENDPOINT_OVERRIDE: one URL (the default standard's simulator), or
    `standard=URL` pairs separated by commas (`abrasf-2.04=http://...,nacional-1.01=https://...`)."""
    text = text.strip()
    if not text:
        return {}
    if "=" not in text:
        return {DEFAULT_STANDARD: text}
    overrides: dict[str, str] = {}
    for part in text.split(","):
        standard, sep, url = part.strip().partition("=")
        if not sep or not standard.strip() or not url.strip():
            raise RegistryError(f"endpoint override {part!r} is not standard=URL")
        overrides[standard.strip()] = url.strip()
    return overrides


def parse_overlay(raw: Any) -> RegistryData:
    """A deployment's registry file over the shipped one: its profiles are added to (or
    replace) the shipped profiles, each of its municipalities replaces the shipped entry of
    that code whole. Validated as the shipped file is; RegistryError names the entry and field."""
    if not isinstance(raw, Mapping):
        raise RegistryError("the registry file must be a JSON object")
    try:
        overlay = _OverlayFile.model_validate(raw)
    except ValidationError as exc:
        raise RegistryError(f"registry file: {exc}") from exc
    shipped = shipped_data()
    return parse_registry_data(
        {
            **shipped,
            "profiles": {**shipped["profiles"], **overlay.profiles},
            "municipios": {**shipped["municipios"], **overlay.municipios},
        }
    )


def parse_overlay_text(text: str | bytes) -> RegistryData:
    """parse_overlay of a file's bytes (JSON)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise RegistryError(f"the registry file is not JSON: {exc}") from exc
    return parse_overlay(raw)


class Registry(Protocol):
    """What the issuance path asks of a registry (ProviderRegistry, or one kept up to date)."""

    def resolve(self, municipio: str) -> ResolvedProvider: ...
    def longest_call_seconds(self) -> float: ...
    def longest_settle(self) -> float: ...


class ProviderRegistry:
    """IBGE code -> ResolvedProvider for one environment, with the local-mode override."""

    def __init__(
        self,
        municipios: Mapping[str, ProviderConfig],
        simulator: ProviderConfig,
        *,
        environment: Environment = "homologacao",
        endpoint_override: str | Mapping[str, str] | None = None,
        simulators: Mapping[str, ProviderConfig] | None = None,
    ) -> None:
        overrides = (
            parse_overrides(endpoint_override)
            if isinstance(endpoint_override, str)
            else dict(endpoint_override or {})
        )
        for url in overrides.values():
            if not url.startswith(("http://", "https://")):
                raise RegistryError(f"endpoint override is not an http(s) URL: {url!r}")
        if overrides and environment == "producao":
            # The override points municipalities at the local simulators: a production
            # deployment must never send real documents there.
            raise RegistryError("an endpoint override cannot be used in producao")
        self._municipios = dict(municipios)
        self._simulator = simulator
        self._simulators = dict(simulators) if simulators is not None else None
        self.environment: Environment = environment
        # Local mode: the simulator URL of each standard (plug-in key).
        self.overrides = overrides
        self.endpoint_override = overrides.get(DEFAULT_STANDARD)

    @classmethod
    def default(
        cls,
        *,
        environment: Environment = "homologacao",
        endpoint_override: str | Mapping[str, str] | None = None,
    ) -> ProviderRegistry:
        municipios, simulator = load_default_data()
        return cls(
            municipios, simulator, environment=environment, endpoint_override=endpoint_override
        )

    @property
    def municipios(self) -> frozenset[str]:
        return frozenset(self._municipios)

    def _simulator_configs(self) -> dict[str, ProviderConfig]:
        if self._simulators is None:
            self._simulators = {
                **load_simulators(),
                standard_key(self._simulator.standard, self._simulator.version): self._simulator,
            }
        return self._simulators

    def _configs(self) -> list[ProviderConfig]:
        if self.overrides:
            simulators = self._simulator_configs()
            return [simulators[s] for s in self.overrides if s in simulators] or [self._simulator]
        return list(self._municipios.values()) or [self._simulator]

    def longest_call_seconds(self) -> float:
        """The longest call any provider this registry resolves to may take (connect + read):
        what a component must budget for one send."""
        return max(sum(config.timeout.as_tuple()) for config in self._configs())

    def longest_settle(self) -> float:
        """The longest time any of these providers may take to show an NFS-e it issued."""
        return max(config.settle_seconds for config in self._configs())

    def standard_of(self, municipio: str) -> str:
        """The plug-in standard of a municipality's document (abrasf-2.04): its entry's, the
        default for a municipality the registry does not know (EmitFn refuses such a
        municipality first, `refusal`, except in local mode)."""
        config = self._municipios.get(municipio)
        if config is None:
            return DEFAULT_STANDARD
        return standard_key(config.standard, config.version)

    def form_of(self, municipio: str) -> DocumentForm | None:
        """The document form of a municipality's ABRASF family (version, namespace, formats):
        what EmitFn builds. None for an entry of another standard, or no entry."""
        config = self._municipios.get(municipio)
        if config is None or config.standard.upper() != "ABRASF":
            return None
        return config.dialect.form

    def config_of(self, municipio: str) -> ProviderConfig | None:
        """The registry entry of a municipality, None when it has none."""
        return self._municipios.get(municipio)

    def refusal(self, municipio: str) -> ProviderNotConfigured | None:
        """Why no invoice can be issued in `municipio`: it has no entry (no provider family this
        deployment supports serves it), only an example one in producao, or no published
        service for this environment. None when it can, and always in local mode (a simulator
        answers for every municipality)."""
        if self.overrides:
            return None
        config = self._municipios.get(municipio)
        if config is None:
            known = unsupported_families().get(municipio)
            if known is not None:
                return ProviderNotConfigured(
                    municipio,
                    f"its provider {known[1]} ({known[0]}) has no adapter in this platform",
                )
            return ProviderNotConfigured(municipio)
        if config.example and self.environment == "producao":
            return ProviderNotConfigured(
                municipio, f"only an example entry ({config.name}) exists, not usable in producao"
            )
        if config.endpoint(self.environment) is None:
            return ProviderNotConfigured(
                municipio,
                f"its provider ({config.family}) publishes no {self.environment} service",
            )
        return None

    def resolve(self, municipio: str) -> ResolvedProvider:
        if self.overrides:
            return self._simulated(municipio)
        refused = self.refusal(municipio)
        if refused is not None:
            raise refused
        config = self._municipios[municipio]
        endpoint = config.endpoint(self.environment)
        assert endpoint is not None
        return ResolvedProvider(
            municipio=municipio,
            environment=self.environment,
            endpoint=endpoint,
            config=config,
            operation_urls=config.operation_urls(self.environment),
        )

    def _simulated(self, municipio: str) -> ResolvedProvider:
        """Local mode: the simulator of the municipality's standard answers for it (the default
        standard's for a municipality the registry does not know). A municipality of an ABRASF
        family keeps its dialect, with its real URLs rebased onto the simulator under the
        family's name (`https://host/path` -> `{simulator origin}/{family}/path`), so the
        simulator speaks to it as that family does; the timeouts and settle time are the
        simulator's."""
        standard = self.standard_of(municipio)
        url = self._override_for(standard)
        simulator = self._simulator_configs().get(standard) or self._simulator_configs().get(
            _standard_family_key(standard, self._simulator_configs())
        )
        if url is None or simulator is None:
            raise ProviderNotConfigured(municipio, f"no local simulator for {standard}")
        config = self._municipios.get(municipio)
        if config is None or config.standard.upper() != "ABRASF":
            return ResolvedProvider(
                municipio=municipio,
                environment=self.environment,
                endpoint=url,
                config=simulator,
                simulated=True,
            )
        origin = _origin(url)
        real = config.endpoints.producao
        rebased = config.model_copy(
            update={
                "timeout": simulator.timeout,
                "settle_seconds": simulator.settle_seconds,
            }
        )
        return ResolvedProvider(
            municipio=municipio,
            environment=self.environment,
            endpoint=_rebased(origin, config.family, real),
            config=rebased,
            simulated=True,
            operation_urls={
                op: _rebased(origin, config.family, u)
                for op, u in config.operation_urls("producao").items()
            },
        )

    def _override_for(self, standard: str) -> str | None:
        """The simulator URL of a standard: its own override, or that of another version of
        the same standard (one ABRASF simulator speaks every ABRASF version)."""
        if standard in self.overrides:
            return self.overrides[standard]
        name = standard.partition("-")[0]
        for key, url in self.overrides.items():
            if key.partition("-")[0] == name:
                return url
        return None


def _standard_family_key(standard: str, configs: Mapping[str, ProviderConfig]) -> str:
    """The key of a simulator config of the same standard (abrasf-2.02 -> abrasf-2.04)."""
    name = standard.partition("-")[0]
    return next((key for key in configs if key.partition("-")[0] == name), standard)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _rebased(origin: str, family: str, url: str) -> str:
    """A provider's real URL on the local simulator: its path under the family's prefix."""
    parts = urlsplit(url)
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{origin}/{family}{path}{query}"
