"""Onboarding a company on a deployed stack: its A1 certificate and its users.

`admin put-certificate` checks the PKCS#12 the way the worker will (it opens with the password,
holds an RSA key, is valid today and names the CNPJ) before anything is written, then stores it
as the secret {CertSecretPrefix}/{cnpj} encrypted with the stack's key. `admin put-user`
creates a Cognito user of a tenant (custom:tenant_id, which only administrators may set) with a
permanent password, so the first sign-in needs no password change. Both read names from the
stack's outputs; neither prints a password or the certificate.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3

from nfse_core.domain.rules import cnpj_problem, normalize_cnpj
from nfse_core.providers.certificates import CertificateError, check_usable, load_pkcs12
from nfse_core.store.control import TenantDirectory
from nfse_local.outputs import missing_outputs_problem


class OnboardingError(RuntimeError):
    """A refused onboarding step; the message says what to fix and never holds a secret."""


@dataclass(frozen=True, slots=True)
class StackNames:
    """What onboarding needs from a stack's outputs."""

    cert_secret_prefix: str
    kms_key_arn: str
    user_pool_id: str
    tenants_table: str

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str]) -> StackNames:
        wanted = ("CertSecretPrefix", "KmsKeyArn", "UserPoolId", "TenantsTableName")
        if problem := missing_outputs_problem(outputs, wanted):
            raise OnboardingError(problem)
        return cls(
            cert_secret_prefix=outputs["CertSecretPrefix"],
            kms_key_arn=outputs["KmsKeyArn"],
            user_pool_id=outputs["UserPoolId"],
            tenants_table=outputs["TenantsTableName"],
        )


def put_certificate(  # noqa: PLR0913 - the secret's fields, and a clock for tests
    secrets: Any,
    names: StackNames,
    cnpj: str,
    pfx: bytes,
    password: str,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check the certificate, then create or replace the CNPJ's secret. Returns what was
    stored (secret name, validity end, whether it was created), never the secret itself."""
    cnpj = normalize_cnpj(cnpj)
    problem = cnpj_problem(cnpj)
    if problem:
        raise OnboardingError(f"CNPJ {cnpj!r}: {problem}")
    if not password:
        raise OnboardingError("an A1 certificate needs its password")
    try:
        certificate = load_pkcs12(cnpj, pfx, password.encode())
        check_usable(cnpj, certificate, now or datetime.now(UTC))
    except CertificateError as error:
        raise OnboardingError(f"certificate refused: {error}") from None
    name = f"{names.cert_secret_prefix}/{cnpj}"
    value = json.dumps({"pfx": base64.b64encode(pfx).decode("ascii"), "password": password})
    created = True
    try:
        secrets.create_secret(
            Name=name,
            KmsKeyId=names.kms_key_arn,
            SecretString=value,
            Description=f"A1 certificate of CNPJ {cnpj} (NFS-e platform)",
        )
    except secrets.exceptions.ResourceExistsException:
        created = False
        secrets.put_secret_value(SecretId=name, SecretString=value)
    return {
        "secret": name,
        "cnpj": cnpj,
        "subject": certificate.subject_cn,
        "notValidAfter": certificate.not_valid_after.isoformat(),
        "created": created,
    }


def put_user(  # noqa: PLR0913 - keyword-only: the user's attributes
    cognito: Any,
    dynamodb: Any,
    names: StackNames,
    username: str,
    *,
    email: str,
    tenant_id: str,
    password: str,
) -> dict[str, Any]:
    """Create (or update) a user of `tenant_id` with a permanent password. The tenant must
    exist (admin put-tenant first): a user of an unknown tenant could sign in and see nothing."""
    if not TenantDirectory(dynamodb, names.tenants_table).cnpjs_of(tenant_id):
        raise OnboardingError(f"tenant {tenant_id!r} does not exist: run admin put-tenant first")
    if "@" not in email:
        raise OnboardingError(f"{email!r} is not an e-mail address")
    attributes = [
        {"Name": "email", "Value": email},
        {"Name": "email_verified", "Value": "true"},
        {"Name": "custom:tenant_id", "Value": tenant_id},
    ]
    created = True
    try:
        cognito.admin_create_user(
            UserPoolId=names.user_pool_id,
            Username=username,
            UserAttributes=attributes,
            MessageAction="SUPPRESS",
        )
    except cognito.exceptions.UsernameExistsException:
        created = False
        cognito.admin_update_user_attributes(
            UserPoolId=names.user_pool_id, Username=username, UserAttributes=attributes
        )
    try:
        cognito.admin_set_user_password(
            UserPoolId=names.user_pool_id, Username=username, Password=password, Permanent=True
        )
    except cognito.exceptions.InvalidPasswordException as error:
        message = error.response.get("Error", {}).get("Message", "")
        raise OnboardingError(f"password refused by the user pool's policy: {message}") from None
    return {"username": username, "tenantId": tenant_id, "created": created}


def add_commands(commands: Any) -> None:
    """`admin put-certificate` and `admin put-user` (commands: the admin subparsers)."""
    cert = commands.add_parser(
        "put-certificate",
        help="check a company's A1 certificate and store it as {CertSecretPrefix}/{cnpj}",
    )
    cert.add_argument("pfx", help="the PKCS#12 file (.pfx / .p12)")
    cert.add_argument("--cnpj", required=True, help="the company's CNPJ (the certificate's)")
    cert.add_argument("--stack", required=True, help="the platform's CloudFormation stack")
    cert.add_argument(
        "--password-env",
        default="PFX_PASSWORD",
        help="environment variable holding the PKCS#12 password (default: PFX_PASSWORD)",
    )
    user = commands.add_parser(
        "put-user", help="create a tenant's user (custom:tenant_id) with a permanent password"
    )
    user.add_argument("username")
    user.add_argument("--email", required=True)
    user.add_argument("--tenant", required=True, help="the tenant id (admin put-tenant)")
    user.add_argument("--stack", required=True, help="the platform's CloudFormation stack")
    user.add_argument(
        "--password-env",
        default="USER_PASSWORD",
        help="environment variable holding the password (default: USER_PASSWORD; 12+ "
        "characters, upper and lower case, digits)",
    )


def run(args: Any, environ: Mapping[str, str], outputs: Mapping[str, str]) -> dict[str, Any]:
    """Run one of the commands above with the stack's outputs; OnboardingError if refused."""
    names = StackNames.from_outputs(outputs)
    password = environ.get(args.password_env, "")
    if not password:
        raise OnboardingError(f"set {args.password_env} to the password")
    if args.admin_command == "put-certificate":
        with open(args.pfx, "rb") as handle:
            pfx = handle.read()
        return put_certificate(boto3.client("secretsmanager"), names, args.cnpj, pfx, password)
    return put_user(
        boto3.client("cognito-idp"),
        boto3.client("dynamodb"),
        names,
        args.username,
        email=args.email,
        tenant_id=args.tenant,
        password=password,
    )
