"""The user pool and app client from template.yaml, in moto: SRP sign-in only, TOTP available.

The local stack signs users in as a real client would, by SRP (USER_SRP_AUTH, then the
PASSWORD_VERIFIER challenge), and the ID token it gets verifies as the local gateway verifies
it. moto's deviations, which these tests cannot see past: it answers USER_SRP_AUTH with a random
SRP_B and salt and does not check the client's proof (any password signature passes), and it
does not enforce the app client's ExplicitAuthFlows (its admin flow still works on this client).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import jwt
import pytest
from moto.cognitoidp.responses import CognitoIdpJsonWebKeyResponse
from pycognito.aws_srp import AWSSRP

from nfse_local.auth import JwtVerifier, cognito_issuer
from nfse_local.resources import LocalResources
from nfse_local.stack import LocalStack, StackError, StackOptions

pytestmark = pytest.mark.integration

REGION = "us-east-1"
PASSWORD = "Correct-Horse-Battery-42"


class MotoJwks(jwt.PyJWKClient):
    """moto's published key set (what its /.well-known/jwks.json serves), without HTTP."""

    def fetch_data(self) -> Any:
        return json.loads(CognitoIdpJsonWebKeyResponse.json_web_key)


@pytest.fixture
def idp(resources: LocalResources) -> Any:
    return boto3.client("cognito-idp", region_name=REGION)


@pytest.fixture
def calls(idp: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every Cognito operation the tests' client makes, with its parameters."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        seen.append((model.name, json.loads(params.get("body") or b"{}")))

    idp.meta.events.register("before-call", record)
    return seen


@pytest.fixture
def stack(resources: LocalResources, idp: Any) -> LocalStack:
    """A LocalStack (not started) on the in-process moto, so its issue_token runs as is."""
    local = LocalStack(StackOptions(write_session=False))
    local.resources = resources

    def client(service: str) -> Any:
        assert service == "cognito-idp", service  # issue_token talks to Cognito only
        return idp

    local.client = client  # type: ignore[method-assign]
    return local


def make_user(idp: Any, resources: LocalResources, username: str, tenant: str) -> None:
    idp.admin_create_user(
        UserPoolId=resources.user_pool_id,
        Username=username,
        UserAttributes=[
            {"Name": "email", "Value": f"{tenant}@example.com"},
            {"Name": "custom:tenant_id", "Value": tenant},
        ],
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(
        UserPoolId=resources.user_pool_id, Username=username, Password=PASSWORD, Permanent=True
    )


def test_the_pool_offers_totp_and_the_client_srp_only(idp: Any, resources: LocalResources) -> None:
    mfa = idp.get_user_pool_mfa_config(UserPoolId=resources.user_pool_id)
    assert mfa["MfaConfiguration"] == "OPTIONAL"
    assert mfa["SoftwareTokenMfaConfiguration"] == {"Enabled": True}
    client = idp.describe_user_pool_client(
        UserPoolId=resources.user_pool_id, ClientId=resources.user_pool_client_id
    )["UserPoolClient"]
    assert sorted(client["ExplicitAuthFlows"]) == [
        "ALLOW_REFRESH_TOKEN_AUTH",
        "ALLOW_USER_SRP_AUTH",
    ]


def test_issue_token_signs_in_by_srp_and_the_gateway_accepts_the_token(
    stack: LocalStack,
    idp: Any,
    resources: LocalResources,
    calls: list[tuple[str, dict[str, Any]]],
) -> None:
    make_user(idp, resources, "ops@acme", "acme")
    calls.clear()
    token = stack.issue_token("ops@acme", PASSWORD)

    # The client's own SRP flow; the password itself is never sent.
    assert [name for name, _ in calls] == ["InitiateAuth", "RespondToAuthChallenge"]
    (_, start), (_, answer) = calls
    assert start["AuthFlow"] == "USER_SRP_AUTH" and set(start["AuthParameters"]) == {
        "USERNAME",
        "SRP_A",
    }
    assert answer["ChallengeName"] == "PASSWORD_VERIFIER"
    assert {"PASSWORD_CLAIM_SIGNATURE", "PASSWORD_CLAIM_SECRET_BLOCK", "TIMESTAMP"} <= set(
        answer["ChallengeResponses"]
    )
    assert PASSWORD not in json.dumps(calls)

    # What the local gateway checks (nfse_local/auth.py): RS256 against the pool's keys,
    # issuer, audience = the app client, token_use = id; and the tenant claim is there.
    verifier = JwtVerifier(
        "http://moto/jwks.json",
        cognito_issuer(REGION, resources.user_pool_id),
        resources.user_pool_client_id,
        jwks_client=MotoJwks("http://moto/jwks.json"),
    )
    claims = verifier.verify(token)
    assert claims["custom:tenant_id"] == "acme"
    assert claims["token_use"] == "id"


def test_a_user_with_totp_enrolled_is_asked_for_the_code(
    stack: LocalStack, idp: Any, resources: LocalResources
) -> None:
    make_user(idp, resources, "ops@globex", "globex")
    tokens = AWSSRP(
        username="ops@globex",
        password=PASSWORD,
        pool_id=resources.user_pool_id,
        client_id=resources.user_pool_client_id,
        client=idp,
    ).authenticate_user()["AuthenticationResult"]
    access = tokens["AccessToken"]
    idp.associate_software_token(AccessToken=access)
    idp.verify_software_token(AccessToken=access, UserCode="123456")
    idp.set_user_mfa_preference(
        AccessToken=access, SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True}
    )
    # Password alone no longer yields a token: Cognito wants the authenticator's code.
    with pytest.raises(StackError, match="SoftwareTokenMFAChallenge"):
        stack.issue_token("ops@globex", PASSWORD)
