"""The embedded stack for the e2e suite: one LocalStack per test session, used over HTTP only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from nfse_local.stack import LocalStack, StackOptions, WorkerOptions


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests whose stack runs in a child process (`own_stack`) come first: they are the longest,
    and under `make test`'s parallel processes they overlap with everything else. The other e2e
    tests run last: the session's moto server shares moto's process-wide backends (an
    in-process `mock_aws` in another test would reset them) and puts AWS_ENDPOINT_URL in the
    environment while it runs."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("own_stack") is not None:
            return 0
        return 2 if item.get_closest_marker("e2e") is not None else 1

    items.sort(key=rank)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole platform on 127.0.0.1. The worker and the simulator start when their modules
    exist. A temporary state dir keeps a developer's running `make serve` session intact."""
    state_dir = tmp_path_factory.mktemp("local-stack")
    with LocalStack(
        StackOptions(state_dir=state_dir), worker=WorkerOptions(log=state_dir / "worker.log")
    ) as stack:
        yield stack


class ApiClient:
    """requests against the local gateway, as a tenant's ERP would call the API."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.base = stack.api_url
        self.http = requests.Session()

    def headers(
        self, tenant: str | None = "acme", *, api_key: str | None = "default", **extra: str
    ) -> dict[str, str]:
        """`api_key="default"` sends the tenant's own key (each tenant has one, as deployed;
        the first tenant's without a tenant); None sends none; anything else is sent as is."""
        headers: dict[str, str] = {}
        if api_key == "default":
            keys = self.stack.tenant_api_keys
            api_key = keys[tenant] if tenant is not None else self.stack.api_key
        if api_key is not None:
            headers["x-api-key"] = api_key
        if tenant is not None:
            headers["Authorization"] = f"Bearer {self.stack.tenant(tenant).token}"
        headers.update(extra)
        return headers

    def emit(
        self,
        body: dict[str, Any],
        *,
        tenant: str = "acme",
        key: str | None = None,
    ) -> requests.Response:
        headers = self.headers(tenant, **{"Idempotency-Key": key or str(uuid.uuid4())})
        return self.http.post(f"{self.base}/invoices", json=body, headers=headers, timeout=30)

    def get(self, invoice_id: str, *, tenant: str = "acme") -> requests.Response:
        return self.http.get(
            f"{self.base}/invoices/{invoice_id}", headers=self.headers(tenant), timeout=30
        )

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.http.request(method, f"{self.base}{path}", **kwargs)


@pytest.fixture(scope="session")
def api(local_stack: LocalStack) -> ApiClient:
    return ApiClient(local_stack)
