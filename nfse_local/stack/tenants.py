"""The sample tenants as the local stack makes them: TenantsTable items, Cognito users with
custom:tenant_id and their ID tokens, an API key each, and their companies' A1 certificates."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from nfse_core.store.control import TenantDirectory
from nfse_local.auth import JwtVerifier
from nfse_local.certs import generate_key_and_certificate, to_pfx
from nfse_local.samples import SampleTenant
from nfse_local.stack.options import StackError


@dataclass(frozen=True, slots=True)
class TenantSession:
    """A sample tenant as the local stack made it: its Cognito user and a fresh ID token."""

    tenant_id: str
    name: str
    cnpjs: tuple[str, ...]
    username: str
    password: str
    token: str

    def as_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "name": self.name,
            "cnpjs": list(self.cnpjs),
            "username": self.username,
            "password": self.password,
            "token": self.token,
        }


def new_api_key() -> str:
    """A random API key of the local stack."""
    return f"local-{secrets.token_urlsafe(24)}"


def _password() -> str:
    # Satisfies the template's policy and moto's default one (which wants a symbol).
    return f"Local-{secrets.token_urlsafe(12)}-9a"


class TenantSeeder:
    """Makes sample tenants in the stack's TenantsTable and Cognito user pool.

    `client` gives a boto3 client of the stack by service name; `issue_token` signs a user in.
    """

    def __init__(
        self,
        resources: Any,
        client: Callable[[str], Any],
        issue_token: Callable[[str, str], str],
    ) -> None:
        self._resources = resources
        self._client = client
        self._issue_token = issue_token

    def create(
        self, samples: Iterable[SampleTenant], first_api_key: str
    ) -> tuple[list[TenantSession], dict[str, str]]:
        """(each tenant's session, each tenant's API key); the first tenant's is `first_api_key`."""
        cognito = self._client("cognito-idp")
        directory = TenantDirectory(self._client("dynamodb"), self._resources.tenants_table)
        pool = self._resources.user_pool_id
        sessions: list[TenantSession] = []
        api_keys: dict[str, str] = {}
        for position, sample in enumerate(samples):
            directory.put_tenant(sample.tenant_id, sample.cnpjs, sample.name)
            api_keys[sample.tenant_id] = first_api_key if position == 0 else new_api_key()
            password = _password()
            cognito.admin_create_user(
                UserPoolId=pool,
                Username=sample.username,
                UserAttributes=[
                    {"Name": "email", "Value": f"{sample.tenant_id}@example.com"},
                    {"Name": "email_verified", "Value": "true"},
                    {"Name": "custom:tenant_id", "Value": sample.tenant_id},
                ],
                MessageAction="SUPPRESS",
            )
            cognito.admin_set_user_password(
                UserPoolId=pool, Username=sample.username, Password=password, Permanent=True
            )
            token = self._issue_token(sample.username, password)
            sessions.append(
                TenantSession(
                    sample.tenant_id, sample.name, sample.cnpjs, sample.username, password, token
                )
            )
        return sessions, api_keys

    def store_certificates(self, cnpjs: Iterable[str]) -> list[x509.Certificate]:
        """The companies' A1 certificates in Secrets Manager, as an operator stores them
        (README): `{CertSecretPrefix}/{cnpj}` = {"pfx": base64, "password": ...}. The worker
        and ProcessorFn read them with their own roles. Returns the certificates (what a
        provider with mutual TLS trusts)."""
        resources = self._resources
        prefix = resources.worker_env().get("CERT_SECRET_PREFIX", "nfse/certificates")
        client = self._client("secretsmanager")
        certificates: list[x509.Certificate] = []
        for cnpj in sorted(set(cnpjs)):
            password = secrets.token_urlsafe(16)
            key, cert = generate_key_and_certificate(cnpj)
            certificates.append(cert)
            pfx = to_pfx(key, cert, password, friendly_name=f"EMPRESA:{cnpj}")
            client.create_secret(
                Name=f"{prefix}/{cnpj}",
                KmsKeyId=resources.kms_key_id,
                SecretString=json.dumps(
                    {"pfx": base64.b64encode(pfx).decode(), "password": password}
                ),
            )
        return certificates


def check_tokens(verifier: JwtVerifier, tenants: Iterable[TenantSession]) -> None:
    """Fails fast (and warms the key cache) if moto's tokens and the verifier disagree."""
    for tenant in tenants:
        claims = verifier.verify(tenant.token)
        if claims.get("custom:tenant_id") != tenant.tenant_id:
            raise StackError(f"the ID token of {tenant.username} lacks custom:tenant_id")
