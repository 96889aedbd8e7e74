"""`admin put-certificate` and `admin put-user` against the template's resources in moto: a
certificate is checked as the worker checks it before any secret is written, and is then
readable by the worker's certificate store; a user carries its tenant in the ID token claim."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from nfse_core.providers.certificates import SecretsManagerCertificateStore
from nfse_local import __main__ as cli
from nfse_local.certs import generate_a1_certificate
from nfse_local.onboarding import OnboardingError, StackNames, put_certificate, put_user
from nfse_local.resources import LocalResources

pytestmark = pytest.mark.integration

ACME_CNPJ = "11222333000181"  # a CNPJ of the seeded tenant acme
OTHER_CNPJ = "11444777000161"
PREFIX = "nfse/certificates"


@pytest.fixture
def names(resources: LocalResources) -> StackNames:
    return StackNames(
        cert_secret_prefix=PREFIX,
        kms_key_arn=resources.kms_key_id,
        user_pool_id=resources.user_pool_id,
        tenants_table=resources.tenants_table,
    )


@pytest.fixture
def secrets(resources: LocalResources) -> Any:
    return boto3.client("secretsmanager", region_name=resources.region)


def secret_names(secrets: Any) -> list[str]:
    return [s["Name"] for s in secrets.list_secrets()["SecretList"]]


def test_a_certificate_is_stored_encrypted_and_the_worker_store_loads_it(
    secrets: Any, names: StackNames
) -> None:
    pfx = generate_a1_certificate(ACME_CNPJ, "s3nha-do-pfx")
    stored = put_certificate(secrets, names, "11.222.333/0001-81", pfx, "s3nha-do-pfx")
    assert stored["secret"] == f"{PREFIX}/{ACME_CNPJ}" and stored["created"] is True
    assert "s3nha" not in json.dumps(stored)
    described = secrets.describe_secret(SecretId=stored["secret"])
    assert described["KmsKeyId"] == names.kms_key_arn
    loaded = SecretsManagerCertificateStore(secrets, PREFIX).get(ACME_CNPJ)
    assert ACME_CNPJ in loaded.subject_cn
    # Replacing it (renewal) keeps one secret with the new value.
    renewed = generate_a1_certificate(ACME_CNPJ, "outra-senha", valid_days=700)
    again = put_certificate(secrets, names, ACME_CNPJ, renewed, "outra-senha")
    assert again["created"] is False
    assert secret_names(secrets).count(f"{PREFIX}/{ACME_CNPJ}") == 1
    assert again["notValidAfter"] > stored["notValidAfter"]


@pytest.mark.parametrize(
    ("cnpj", "password", "pfx_args", "expected"),
    [
        (ACME_CNPJ, "wrong", {}, "cannot open the PKCS#12"),
        (OTHER_CNPJ, "pw", {}, "names CNPJ 11222333000181"),
        (ACME_CNPJ, "pw", {"valid_days": 1}, "expired"),
        ("11222333000182", "pw", {}, "check digits"),
    ],
    ids=["wrong-password", "another-company", "expired", "bad-cnpj"],
)
def test_a_certificate_the_worker_would_refuse_writes_nothing(
    secrets: Any,
    names: StackNames,
    cnpj: str,
    password: str,
    pfx_args: dict[str, Any],
    expected: str,
) -> None:
    pfx = generate_a1_certificate(ACME_CNPJ, "pw", **pfx_args)
    with pytest.raises(OnboardingError, match=expected) as refused:
        put_certificate(
            secrets, names, cnpj, pfx, password, now=datetime.now(UTC) + timedelta(days=2)
        )
    assert "pw" not in str(refused.value).replace("PKCS", "")
    assert not [n for n in secret_names(secrets) if n.startswith(PREFIX)]


def test_a_user_gets_its_tenant_and_a_permanent_password(
    resources: LocalResources, names: StackNames
) -> None:
    cognito = boto3.client("cognito-idp", region_name=resources.region)
    dynamodb = boto3.client("dynamodb", region_name=resources.region)
    made = put_user(
        cognito,
        dynamodb,
        names,
        "ana",
        email="ana@acme.example",
        tenant_id="acme",
        password="Senha-Forte-123",
    )
    assert made == {"username": "ana", "tenantId": "acme", "created": True}
    user = cognito.admin_get_user(UserPoolId=names.user_pool_id, Username="ana")
    attributes = {a["Name"]: a["Value"] for a in user["UserAttributes"]}
    assert attributes["custom:tenant_id"] == "acme"
    assert user["UserStatus"] == "CONFIRMED"
    again = put_user(
        cognito,
        dynamodb,
        names,
        "ana",
        email="ana@acme.example",
        tenant_id="acme",
        password="Senha-Forte-456",
    )
    assert again["created"] is False
    with pytest.raises(OnboardingError, match="run admin put-tenant first"):
        put_user(
            cognito,
            dynamodb,
            names,
            "bob",
            email="bob@x.example",
            tenant_id="nobody",
            password="Senha-Forte-123",
        )
    with pytest.raises(OnboardingError, match="password refused"):
        put_user(
            cognito,
            dynamodb,
            names,
            "eve",
            email="eve@acme.example",
            tenant_id="acme",
            password="short",
        )


def test_the_cli_reads_the_password_from_the_environment_only(
    resources: LocalResources,
    names: StackNames,
    secrets: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outputs = {
        "CertSecretPrefix": PREFIX,
        "KmsKeyArn": names.kms_key_arn,
        "UserPoolId": names.user_pool_id,
        "TenantsTableName": names.tenants_table,
    }
    monkeypatch.setattr("nfse_local.admin.stack_outputs", lambda stack: outputs)
    pfx_path = tmp_path / "acme.pfx"
    pfx_path.write_bytes(generate_a1_certificate(ACME_CNPJ, "pfx-pw"))
    argv = ["admin", "put-certificate", str(pfx_path), "--cnpj", ACME_CNPJ, "--stack", "nfse-dev"]
    monkeypatch.delenv("PFX_PASSWORD", raising=False)
    assert cli.main(argv) == 2
    assert "set PFX_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("PFX_PASSWORD", "pfx-pw")
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["secret"] == f"{PREFIX}/{ACME_CNPJ}"
