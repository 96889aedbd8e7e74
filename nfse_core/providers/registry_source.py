"""The deployed registry: the shipped providers.json with a deployment's overlay from S3 over it.

The overlay is one object in the documents bucket (PROVIDERS_OBJECT_KEY, by default
`config/providers.json`, written by `python -m nfse_local admin put-providers`). It is read
again after PROVIDERS_CACHE_SECONDS, so a new municipality needs an upload, not a rebuild of
the layer and the image. No object is normal: the shipped data alone. An object that cannot be
read or does not validate is loud (the REGISTRY_REFUSED_LOG line, counted by the
ProviderRegistryRefused metric filter and alarmed) and changes nothing: the last registry that
validated stays (the shipped one if none did), so a bad upload never stops every invoice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from nfse_core.providers.registry import (
    Environment,
    ProviderNotConfigured,
    ProviderRegistry,
    RegistryData,
    ResolvedProvider,
    load_default_data,
    parse_overlay_text,
)
from nfse_core.xml.forms import DocumentForm

log = logging.getLogger(__name__)

DEFAULT_OBJECT_KEY = "config/providers.json"
# The line the ProviderRegistryRefused metric filter counts (template.yaml).
REGISTRY_REFUSED_LOG = "provider registry refused"


class OverlaySource(Protocol):
    def read(self) -> bytes | None:
        """The overlay's bytes, None when there is none; raises when it cannot be read."""
        ...


class S3RegistryObject:
    """The overlay object. Its absence is asked with a ListObjectsV2 on its own key as prefix
    (the role's s3:ListBucket is limited to that prefix): without s3:ListBucket, a GetObject of
    a missing key is a 403, which must not be mistaken for "no overlay" nor hide a real denial."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._s3 = client
        self._bucket = bucket
        self._key = key

    @property
    def location(self) -> str:
        return f"s3://{self._bucket}/{self._key}"

    def read(self) -> bytes | None:
        listed = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=self._key, MaxKeys=1)
        if not any(item.get("Key") == self._key for item in listed.get("Contents") or []):
            return None
        answer = self._s3.get_object(Bucket=self._bucket, Key=self._key)
        data: bytes = answer["Body"].read()
        return data


class LiveRegistry:
    """A ProviderRegistry that re-reads the overlay every `ttl_seconds` (on the first lookup
    after that), keeping the last registry that validated."""

    def __init__(
        self,
        source: OverlaySource,
        *,
        environment: Environment = "homologacao",
        ttl_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
        endpoint_override: str | None = None,
    ) -> None:
        self._source = source
        self._environment: Environment = environment
        # Local mode: the simulators' URLs (ProviderRegistry's endpoint_override).
        self._endpoint_override = endpoint_override or None
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._current = self._build(load_default_data())
        self._checked_at: float | None = None
        self._origin = "shipped"

    @property
    def environment(self) -> Environment:
        return self._environment

    @property
    def origin(self) -> str:
        """Where the registry in use came from: "shipped" or "overlay"."""
        return self._origin

    def _build(self, data: RegistryData) -> ProviderRegistry:
        municipios, simulator = data
        return ProviderRegistry(
            municipios,
            simulator,
            environment=self._environment,
            endpoint_override=self._endpoint_override,
        )

    def current(self) -> ProviderRegistry:
        now = self._monotonic()
        with self._lock:
            if self._checked_at is None or now - self._checked_at >= self._ttl:
                # Checked once per period even when it fails: a bad object is reported once
                # per period, not on every invoice.
                self._checked_at = now
                self._refresh()
            return self._current

    def _refresh(self) -> None:
        try:
            raw = self._source.read()
            if raw is None:
                self._current, self._origin = self._build(load_default_data()), "shipped"
                return
            data = parse_overlay_text(raw)
        except Exception as exc:  # any failure keeps the last good registry
            log.error(
                REGISTRY_REFUSED_LOG,
                extra={
                    "source": getattr(self._source, "location", type(self._source).__name__),
                    "reason": str(exc),
                    "kept": self._origin,
                },
            )
            return
        self._current, self._origin = self._build(data), "overlay"

    # The Registry protocol (and EmitFn's Standards), on the current registry.
    def resolve(self, municipio: str) -> ResolvedProvider:
        return self.current().resolve(municipio)

    def standard_of(self, municipio: str) -> str:
        return self.current().standard_of(municipio)

    def refusal(self, municipio: str) -> ProviderNotConfigured | None:
        return self.current().refusal(municipio)

    def form_of(self, municipio: str) -> DocumentForm | None:
        return self.current().form_of(municipio)

    def longest_call_seconds(self) -> float:
        return self.current().longest_call_seconds()

    def longest_settle(self) -> float:
        return self.current().longest_settle()
