"""Each ABRASF provider family on the local stack: POST -> EMITTED -> ISSUED through the
simulator speaking that family's dialect (nfse_local/simulator/dialects.py, its own code), a
lost answer recovered by the consult with one NFS-e only, and the stored RPS in the family's
own form."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nfse_local.samples import FAMILY_MUNICIPIOS, family_body
from nfse_local.stack import LocalStack
from tests.e2e.conftest import ApiClient

pytestmark = pytest.mark.e2e


def wait_final(api: ApiClient, invoice_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = api.get(invoice_id).json()
        if view["status"] in ("ISSUED", "FAILED") or time.monotonic() > deadline:
            return view
        time.sleep(0.3)


@pytest.mark.parametrize("family", sorted(FAMILY_MUNICIPIOS))
def test_a_family_issues_after_a_lost_answer_exactly_once(
    family: str, api: ApiClient, local_stack: LocalStack
) -> None:
    body = family_body(family, discriminacao=f"Suporte {family} [sim:lost]")
    created = api.emit(body)
    assert created.status_code == 201, created.text
    view = wait_final(api, created.json()["invoiceId"])
    assert view["status"] == "ISSUED", view
    assert local_stack.simulator is not None
    stats = local_stack.simulator.stats()
    issued = [k for k, n in stats["issuances_per_rps"].items() if n > 1]
    assert issued == [], f"issued twice: {issued}"
    s3 = local_stack.client("s3")
    signed = s3.get_object(
        Bucket=local_stack.resources.docs_bucket, Key=f"signed/{view['invoiceId']}.xml"
    )["Body"].read()
    if family in ("webiss-2.02", "betha-2.02"):
        assert b"<ItemListaServico>0107</ItemListaServico>" in signed
        assert b"<Tomador>" in signed
    if family == "betha-2.02":
        assert b"http://www.betha.com.br/e-nota-contribuinte-ws" in signed
    if family == "issnet-2.04":
        assert b'URI=""' in signed


def test_the_session_lists_one_municipality_per_family(local_stack: LocalStack) -> None:
    session = local_stack.session_data()
    families = {entry["family"] for entry in session["providers"]}
    assert {"abrasf-2.04", *FAMILY_MUNICIPIOS} <= families
