"""Under IAM enforced as AWS enforces it, with each component's own role: EmitFn, the worker and
ProcessorFn read the deployed provider registry (a missing one is "none", not a 403), admin
put-providers stores it, EmitFn builds the document of the standard it names, and ProcessorFn
issues a DLQ invoice whose signed RPS does not exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nfse_core.bootstrap import build_emit, build_issuance
from nfse_core.config import ApiSettings, ProcessorSettings
from nfse_core.domain.invoice import utc_now
from nfse_core.domain.status import InvoiceStatus
from nfse_core.providers.registry import ProviderNotConfigured
from nfse_core.providers.registry_source import DEFAULT_OBJECT_KEY, LiveRegistry, S3RegistryObject
from nfse_core.services.api import EmitApi
from nfse_core.services.reprocess import (
    LAST_CHANCE_RETRY,
    DlqReprocessor,
    S3Parking,
    dlq_message_seconds,
)
from nfse_core.store.aws import AwsClients
from nfse_core.store.control import TenantDirectory
from nfse_core.store.ledger import Ledger
from nfse_local import admin
from nfse_local.samples import invoice_body
from nfse_local.simulator import ProviderSimulator
from tests import plugin_double
from tests.integration.iam_harness import (
    CNPJ,
    PROCESSOR,
    ROOT,
    WORKER,
    Enforced,
    emitted_invoice,
    refused,
    store_certificate,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("dummy_credentials")]
EXAMPLE = ROOT / "docs" / "providers.example.json"
EMIT = "EmitFn"


def as_admin(stack: Enforced, monkeypatch: pytest.MonkeyPatch) -> None:
    """The person running `admin` (boto3's default session) has the harness's admin keys."""
    credentials = stack.iam.admin_credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["AWS_SECRET_ACCESS_KEY"])


@pytest.mark.parametrize("principal", [EMIT, WORKER, PROCESSOR])
def test_each_role_reads_the_deployed_registry_and_nothing_else_of_the_bucket(
    stack: Enforced,
    principal: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Defect: the registry was baked into the layer and the image. Now it is an object; the
    roles must tell "no object" (the shipped registry) from a refusal: a GetObject of a missing
    key without s3:ListBucket is a 403, so the code lists the one key it may list."""
    bucket = stack.resources.docs_bucket
    s3 = stack.client("s3", principal)
    source = S3RegistryObject(s3, bucket, DEFAULT_OBJECT_KEY)
    assert source.read() is None  # no object yet: the shipped registry, no error
    refused(lambda: s3.get_object(Bucket=bucket, Key=DEFAULT_OBJECT_KEY))  # why it lists
    refused(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="xml/"))  # no other key listed
    refused(lambda: s3.list_objects_v2(Bucket=bucket))
    registry = LiveRegistry(source, environment="homologacao")
    with pytest.raises(ProviderNotConfigured):
        registry.resolve("3550308")

    as_admin(stack, monkeypatch)
    code = admin.main(
        [
            "put-providers",
            str(EXAMPLE),
            "--bucket",
            bucket,
            "--kms-key-id",
            stack.resources.kms_key_id,
        ]
    )
    assert code == 0, capsys.readouterr().err
    stored = stack.client("s3").head_object(Bucket=bucket, Key=DEFAULT_OBJECT_KEY)
    assert stored["ServerSideEncryption"] == "aws:kms"

    fresh = LiveRegistry(
        S3RegistryObject(s3, bucket, DEFAULT_OBJECT_KEY), environment="homologacao"
    )
    resolved = fresh.resolve("3550308")  # read with the role's own permissions (and key)
    assert resolved.config.name == "homologacao-exemplo-3550308"
    assert fresh.origin == "overlay"


def test_emit_fn_builds_the_document_of_the_standard_the_deployed_registry_names(
    stack: Enforced,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Defect: EmitFn picked the standard from the shipped registry only, so a municipality
    the deployed registry maps to another standard got the wrong document (XSD-validated
    against the wrong schema). EmitFn, with its own role, reads the deployed object and
    builds the document of the plug-in its entry names; the rest keep ABRASF 2.04."""
    resources = stack.resources
    admin_s3 = stack.client("s3")
    TenantDirectory(stack.client("dynamodb"), resources.tenants_table).put_tenant("acme", [CNPJ])
    settings = ApiSettings.from_env(resources.function_env(EMIT))
    assert settings.providers_object_key == DEFAULT_OBJECT_KEY

    def document(api: EmitApi, municipio: str) -> bytes:
        result = api.emit("acme", invoice_body(CNPJ, municipio=municipio), None)
        stored = admin_s3.get_object(Bucket=resources.docs_bucket, Key=result["xmlKey"])
        body: bytes = stored["Body"].read()
        return body

    abrasf = b"InfDeclaracaoPrestacaoServico"
    with plugin_double.installed():
        warm = build_emit(settings, AwsClients(stack.iam.session(EMIT)))
        assert abrasf in document(warm, "3133808")  # no object: the shipped registry
        with pytest.raises(ProviderNotConfigured):  # a municipality it has no entry for
            document(warm, "3550308")

        path = tmp_path / "providers.json"
        municipios = {"3550308": plugin_double.entry("outro")}
        path.write_text(json.dumps({"schema_version": 1, "municipios": municipios}))
        as_admin(stack, monkeypatch)
        assert admin.main(["put-providers", str(path), "--bucket", resources.docs_bucket]) == 0
        capsys.readouterr()

        cold = build_emit(settings, AwsClients(stack.iam.session(EMIT)))
        marked = document(cold, "3550308")
        assert marked.startswith(b"<TestDocument ")
        assert f'standard="{plugin_double.KEY}" municipio="3550308"'.encode() in marked
        assert abrasf in document(cold, "3133808")  # not in the deployed file: shipped entry
        # An instance keeps what it read for PROVIDERS_CACHE_SECONDS, then reads it again.
        with pytest.raises(ProviderNotConfigured):
            document(warm, "3550308")


def test_put_providers_refuses_an_invalid_file_before_writing(
    stack: Enforced,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    bucket = stack.resources.docs_bucket
    bad = json.loads(EXAMPLE.read_text())
    entry = bad["municipios"]["3550308"]
    entry["endpoints"]["homologacao"] = "https://homologacao.example.gov.br:8443/nfse"
    path = tmp_path / "providers.json"
    path.write_text(json.dumps(bad))
    as_admin(stack, monkeypatch)
    assert admin.main(["put-providers", str(path), "--bucket", bucket]) == 2
    err = capsys.readouterr().err
    assert "municipios.3550308.endpoints.homologacao" in err and "8443" in err
    listed = stack.client("s3").list_objects_v2(Bucket=bucket, Prefix="config/")
    assert listed.get("KeyCount", 0) == 0  # nothing written

    assert admin.main(["providers", "--bucket", bucket]) == 0
    shown = capsys.readouterr().out
    assert "3133808" in shown and "3550308" not in shown  # shipped only
    assert admin.main(["put-providers", str(EXAMPLE), "--bucket", bucket]) == 0
    capsys.readouterr()
    assert admin.main(["providers", "--bucket", bucket]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("3550308")]
    assert "overlay" in line and "profile=abrasf-2.04" in line
    assert "homologacao=homologacao.nfse.municipio.example.invalid" in line


def test_processor_fn_issues_a_dlq_invoice_with_its_own_role(
    stack: Enforced, ledger: Ledger, ledger_url: str
) -> None:
    """ProcessorFn's first look at an invoice the worker never signed (no signed RPS in S3),
    with ProcessorFn's role only: every call it makes (SQS on the DLQ, DynamoDB, the S3 read of
    the RPS, the signed RPS and NFS-e writes, the certificate secret, KMS) must be granted, or
    the invoice stays in the DLQ for ever. (The simulator answers for every municipality, so
    no registry object is read here; the test above reads it with this role.)"""
    del ledger  # requested for its emptied table
    resources = stack.resources
    store_certificate(stack)
    invoice_id = emitted_invoice(stack)
    dlq = resources.processor_env()["DLQ_URL"]
    stack.client("sqs").send_message(
        QueueUrl=dlq, MessageBody=json.dumps({"invoiceId": invoice_id})
    )
    with ProviderSimulator() as simulator:
        env = dict(resources.processor_env()) | {
            "PROVIDER_ENDPOINT_OVERRIDE": simulator.url,
            "DATABASE_URL": ledger_url,
        }
        settings = ProcessorSettings.from_env(env)
        clients = AwsClients(stack.iam.session(PROCESSOR))
        issuance = build_issuance(settings, clients, retry=LAST_CHANCE_RETRY)
        registry = issuance.registry
        run = DlqReprocessor(
            sqs=clients.sqs,
            dlq_url=settings.dlq_url,
            service=issuance.service,
            parking=S3Parking(issuance.documents, utc_now),
            per_message_seconds=lambda: dlq_message_seconds(
                LAST_CHANCE_RETRY, registry.longest_call_seconds(), registry.longest_settle()
            ),
            hold_seconds=settings.hold_seconds,
        ).run(10, lambda: 900.0)
    assert run.as_dict() | {"issued": 1, "deleted": 1} == run.as_dict(), run
    record = issuance.invoices.get(invoice_id)
    assert record is not None and record.status is InvoiceStatus.ISSUED
    assert simulator.stats()["issued"] == 1
