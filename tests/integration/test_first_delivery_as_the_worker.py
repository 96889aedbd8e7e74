"""The issuance of a first delivery, run with the worker task role's own credentials under IAM
enforced as AWS enforces it (nfse_local/iam.py, nfse_local/moto_patches.py): the defect that
stopped every invoice in AWS fails here too."""

from __future__ import annotations

import pytest

from nfse_core.bootstrap import build_issuance
from nfse_core.config import WorkerSettings
from nfse_core.domain.status import InvoiceStatus
from nfse_core.services.issue import Outcome
from nfse_core.store.aws import AwsClients
from nfse_core.store.ledger import Ledger
from nfse_local.simulator import ProviderSimulator
from tests.integration.iam_harness import WORKER, Enforced, emitted_invoice, store_certificate

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("dummy_credentials")]


def test_a_first_delivery_is_issued_with_the_worker_roles_permissions(
    stack: Enforced, ledger: Ledger, ledger_url: str
) -> None:
    """Defect: the worker asked S3 whether the signed RPS existed (HeadObject) with
    s3:GetObject but without s3:ListBucket; for a missing key S3 then answers 403, not 404,
    and every first delivery crashed. Here the worker's own role runs the whole issuance."""
    del ledger  # requested for its emptied table (RPS numbers restart with each stack)
    resources = stack.resources
    store_certificate(stack)
    invoice_id = emitted_invoice(stack)
    with ProviderSimulator() as simulator:
        env = dict(resources.worker_env()) | {
            "PROVIDER_ENDPOINT_OVERRIDE": simulator.url,
            "DATABASE_URL": ledger_url,
        }
        issuance = build_issuance(
            WorkerSettings.from_env(env), AwsClients(stack.iam.session(WORKER))
        )
        result = issuance.service.process(invoice_id, redelivered=False)
    assert result.outcome is Outcome.ISSUED, result
    record = issuance.invoices.get(invoice_id)
    assert record is not None and record.status is InvoiceStatus.ISSUED
    assert simulator.stats()["issued"] == 1
