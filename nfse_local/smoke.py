"""`python -m nfse_local smoke`: emit one invoice through a deployed stack and follow it to its end.

Signs in to the stack's Cognito user pool as its app client does (SRP; then the authenticator's
TOTP code when the user has MFA), POSTs one invoice with an Idempotency-Key and the tenant's API
key, and polls GET /invoices/{id}, printing each status change, until ISSUED or FAILED or the
deadline. The stack's URL and app client come from its CloudFormation outputs (EdgeUrl, else
ApiUrl; UserPoolId, UserPoolClientId), or from a running local stack's session file.

Exit status: 0 ISSUED; 1 FAILED (or CANCELLED), with the error printed; 2 no final status before
the deadline; 3 the smoke could not run (stack, sign-in, or the POST refused).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import os
import struct
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

import boto3
import requests
from botocore.exceptions import BotoCoreError, ClientError
from pycognito.aws_srp import AWSSRP
from pycognito.exceptions import SoftwareTokenMFAChallengeException, WarrantException

from nfse_core.domain.rules import FISCAL_TZ
from nfse_local.samples import invoice_body

EXIT_ISSUED = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
EXIT_ERROR = 3
FINAL = {"ISSUED", "FAILED", "CANCELLED"}
# Answers worth another GET: the stage's throttle, a cold or briefly unavailable function.
RETRY_STATUSES = {429, 500, 502, 503, 504}


class SmokeError(Exception):
    """The smoke could not run; the message says what to fix."""


@dataclass(frozen=True)
class Target:
    """Where the API and the user pool are, and how to reach Cognito."""

    api_url: str
    region: str
    user_pool_id: str
    client_id: str
    cognito_endpoint: str | None = None


def totp(secret: str, at: float | None = None, *, digits: int = 6, step: int = 30) -> str:
    """The authenticator's current code (RFC 6238, HMAC-SHA1) for a base32 secret, as the
    secret Cognito's AssociateSoftwareToken gives."""
    text = secret.replace(" ", "").upper()
    key = base64.b32decode(text + "=" * (-len(text) % 8))
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def stack_target(stack: str, region: str, cloudformation: Any | None = None) -> Target:
    """The target from a deployed stack's outputs (describe-stacks)."""
    # A session of its own: the credentials in effect now (boto3's default session keeps the
    # first ones it resolved, which a long-lived caller may have changed since).
    cfn = cloudformation or boto3.session.Session(region_name=region).client("cloudformation")
    try:
        (described,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as error:
        raise SmokeError(f"stack {stack} in {region}: {error}") from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = {"UserPoolId", "UserPoolClientId"} - set(outputs)
    api_url = outputs.get("EdgeUrl") or outputs.get("ApiUrl")
    if missing or not api_url:
        absent = sorted(missing | (set() if api_url else {"ApiUrl"}))
        raise SmokeError(f"stack {stack} has no output {', '.join(absent)}: is it this platform?")
    return Target(api_url.rstrip("/"), region, outputs["UserPoolId"], outputs["UserPoolClientId"])


def session_target(session: Mapping[str, Any]) -> Target:
    """The target from a running local stack's session file (`python -m nfse_local serve`)."""
    return Target(
        api_url=str(session["apiUrl"]).rstrip("/"),
        region=str(session["region"]),
        user_pool_id=str(session["userPoolId"]),
        client_id=str(session["clientId"]),
        cognito_endpoint=str(session["awsEndpoint"]),
    )


def sign_in(target: Target, username: str, password: str, totp_secret: str | None) -> str:
    """An ID token by the app client's SRP flow, answering the TOTP challenge if asked."""
    idp = boto3.session.Session(region_name=target.region).client(
        "cognito-idp", endpoint_url=target.cognito_endpoint
    )
    srp = AWSSRP(
        username=username,
        password=password,
        pool_id=target.user_pool_id,
        client_id=target.client_id,
        client=idp,
    )
    try:
        answer = srp.authenticate_user()
    except SoftwareTokenMFAChallengeException as challenge:
        if not totp_secret:
            raise SmokeError(
                f"{username} has MFA (TOTP): pass --totp-secret-env with the authenticator's secret"
            ) from challenge
        tokens = challenge.get_tokens()
        try:
            answer = idp.respond_to_auth_challenge(
                ClientId=target.client_id,
                ChallengeName="SOFTWARE_TOKEN_MFA",
                Session=tokens["Session"],
                ChallengeResponses={
                    "USERNAME": tokens.get("ChallengeParameters", {}).get("USER_ID_FOR_SRP")
                    or username,
                    "SOFTWARE_TOKEN_MFA_CODE": totp(totp_secret),
                },
            )
        except ClientError as error:
            raise SmokeError(f"the TOTP code was refused: {error}") from error
    except WarrantException as error:
        raise SmokeError(f"{username}: Cognito asked for {type(error).__name__}") from error
    except ClientError as error:
        raise SmokeError(f"sign-in as {username} refused: {error}") from error
    return str(answer["AuthenticationResult"]["IdToken"])


def competencia_today(now: datetime | None = None) -> str:
    """The first day of the current month in São Paulo: a competência providers accept."""
    today = (now or datetime.now(FISCAL_TZ)).astimezone(FISCAL_TZ).date()
    return date(today.year, today.month, 1).isoformat()


@dataclass
class Smoke:
    target: Target
    token: str
    api_key: str
    out: TextIO | None = None  # sys.stdout when it prints
    interval: float = 2.0
    clock: Callable[[], float] = time.monotonic
    http: requests.Session | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        return {"x-api-key": self.api_key, "Authorization": f"Bearer {self.token}", **extra}

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def run(self, body: dict[str, Any], timeout: float) -> int:
        http = self.http or requests.Session()
        key = str(uuid.uuid4())
        created = http.post(
            f"{self.target.api_url}/invoices",
            json=body,
            headers=self.headers(**{"Idempotency-Key": key}),
            timeout=30,
        )
        if created.status_code not in (200, 201):
            raise SmokeError(f"POST /invoices answered {created.status_code}: {created.text}")
        invoice_id = str(created.json()["invoiceId"])
        self.say(f"POST /invoices {created.status_code}: {invoice_id} (Idempotency-Key {key})")
        deadline = self.clock() + timeout
        seen = ""
        while True:
            answer = http.get(
                f"{self.target.api_url}/invoices/{invoice_id}", headers=self.headers(), timeout=30
            )
            if answer.status_code == 200:
                invoice: dict[str, Any] = answer.json()
                status = str(invoice["status"])
                if status != seen:
                    seen = status
                    self.say(f"{datetime.now(FISCAL_TZ):%H:%M:%S} {status}{_detail(invoice)}")
                if status in FINAL:
                    return EXIT_ISSUED if status == "ISSUED" else EXIT_FAILED
            elif answer.status_code not in RETRY_STATUSES:
                raise SmokeError(
                    f"GET /invoices/{invoice_id} answered {answer.status_code}: {answer.text}"
                )
            if self.clock() >= deadline:
                last = seen or "none"
                self.say(f"no final status after {timeout:g} s (last: {last}); GET it later")
                return EXIT_TIMEOUT
            time.sleep(self.interval)


def _detail(invoice: Mapping[str, Any]) -> str:
    if invoice["status"] == "ISSUED":
        number, code = invoice.get("nfseNumber"), invoice.get("verificationCode")
        return f" NFS-e {number} (verification code {code})"
    error = invoice.get("error") or {}
    if error:
        return f" {error.get('code')}: {error.get('message')}"
    return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="the deployed stack's name (its outputs are read)")
    where.add_argument(
        "--session",
        nargs="?",
        const=".local/session.json",
        help="a running local stack's session file (default .local/session.json)",
    )
    parser.add_argument("--region", help="the stack's region (with --stack; default: AWS_REGION)")
    parser.add_argument("--username", help="a Cognito user of the tenant (with its tenant claim)")
    parser.add_argument("--password-env", help="variable holding the password (else: asked)")
    parser.add_argument("--totp-secret-env", help="variable holding the user's TOTP secret")
    parser.add_argument("--api-key-env", help="variable holding the tenant's API key")
    parser.add_argument("--cnpj", default="11222333000181", help="the prestador's CNPJ")
    parser.add_argument("--inscricao-municipal", default="12345678", help="its inscrição")
    parser.add_argument("--municipio", default="3550308", help="IBGE code where it is issued")
    parser.add_argument(
        "--discriminacao", default="Teste de emissao (smoke) - homologacao", help="service text"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait (300)")
    parser.add_argument("--interval", type=float, default=2, help="seconds between GETs (2)")


def _from_env(name: str | None, what: str, environ: Mapping[str, str]) -> str | None:
    if name is None:
        return None
    value = environ.get(name, "")
    if not value:
        raise SmokeError(f"{what}: the variable {name} is empty or not set")
    return value


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        return _run(args, env)
    except SmokeError as error:
        print(f"smoke: {error}", file=sys.stderr)
        return EXIT_ERROR
    except requests.RequestException as error:
        print(f"smoke: the API could not be reached: {error}", file=sys.stderr)
        return EXIT_ERROR


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    username: str | None = args.username
    password = _from_env(args.password_env, "--password-env", env)
    api_key = _from_env(args.api_key_env, "--api-key-env", env)
    totp_secret = _from_env(args.totp_secret_env, "--totp-secret-env", env)
    if args.session is not None:
        session = json.loads(Path(args.session).read_text(encoding="utf-8"))
        target = session_target(session)
        # The session's sample tenants fill in what was not given.
        tenants = session.get("tenants") or []
        tenant = next((t for t in tenants if t["username"] == username), None)
        if tenant is None and username is None and tenants:
            tenant = tenants[0]
        if tenant is not None:
            username = username or tenant["username"]
            password = password or tenant["password"]
            api_key = api_key or tenant["apiKey"]
    else:
        region = args.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            raise SmokeError("--region is required with --stack")
        target = stack_target(args.stack, region)
    if not username:
        raise SmokeError("--username is required")
    if not api_key:
        raise SmokeError("--api-key-env is required (the tenant's API key)")
    if password is None:
        password = getpass.getpass(f"password of {username}: ")
    token = sign_in(target, username, password, totp_secret)
    print(f"signed in as {username} to {target.api_url}", flush=True)
    body = invoice_body(
        args.cnpj,
        discriminacao=args.discriminacao,
        municipio=args.municipio,
        inscricaoMunicipal=args.inscricao_municipal,
        competencia=competencia_today(),
    )
    return Smoke(target, token, api_key, interval=args.interval).run(body, args.timeout)
