"""Edge and infrastructure security of template.yaml, and where secrets may (not) appear.

The edge: CloudFront (HTTPS only, TLS 1.2 to the origin, no caching, the viewer's headers
forwarded) with the CLOUDFRONT web ACL of the companion stack edge/template.yaml (us-east-1 only,
its ARN passed as EdgeWebAclArn), and a REGIONAL web ACL on the API stage that refuses requests
without CloudFront's secret origin header. Encryption: every
table, bucket, queue, topic, secret and log group uses the stack key. Secrets: environment
variables carry names, ARNs and prefixes only; the certificate store never logs a password.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from adapters_service.worker import configure_logging
from nfse_core.providers.certificates import (
    Certificate,
    CertificateInvalid,
    SecretsManagerCertificateStore,
    load_pkcs12,
)
from nfse_local.certs import generate_a1_certificate
from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
CNPJ = "11222333000181"


@cache
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@cache
def edge_template() -> dict[str, Any]:
    """The companion stack with the CLOUDFRONT web ACL (make deploy-edge)."""
    return load_template(ROOT / "edge" / "template.yaml")


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template()["Resources"].items() if r["Type"] == kind}


def props(logical_id: str) -> dict[str, Any]:
    if logical_id in edge_template()["Resources"]:
        edge: dict[str, Any] = edge_template()["Resources"][logical_id]["Properties"]
        return edge
    properties: dict[str, Any] = template()["Resources"][logical_id]["Properties"]
    return properties


def refs_key(value: Any) -> bool:
    """The value is the stack key (Ref KmsKey or GetAtt KmsKey.Arn)."""
    return value in ({"Ref": "KmsKey"}, {"Fn::GetAtt": ["KmsKey", "Arn"]})


# ---------------------------------------------------------------------- edge ----


def test_edge_is_conditional_and_the_cloudfront_acl_is_the_companion_stacks() -> None:
    """One way to the edge ACL in every region: the companion stack (us-east-1, where AWS keeps
    CLOUDFRONT web ACLs), its ARN passed to the main stack; the main stack makes none."""
    conditions = template()["Conditions"]
    assert template()["Parameters"]["EnableEdge"]["AllowedValues"] == ["true", "false"]
    assert conditions["EdgeHasWebAcl"] == {
        "Fn::And": [{"Condition": "EdgeEnabled"}, {"Condition": "HasEdgeWebAclArn"}]
    }
    assert "us-east-1" not in json.dumps(conditions)
    scopes = {r["Properties"]["Scope"] for r in resources("AWS::WAFv2::WebACL").values()}
    assert scopes == {"REGIONAL"}
    assert template()["Resources"]["EdgeDistribution"]["Condition"] == "EdgeEnabled"
    assert props("EdgeWebAcl")["Scope"] == "CLOUDFRONT"
    assert props("ApiWebAcl")["Scope"] == "REGIONAL"


def test_distribution_is_https_only_uncached_and_forwards_the_api_headers() -> None:
    config = props("EdgeDistribution")["DistributionConfig"]
    (origin,) = config["Origins"]
    assert origin["DomainName"] == {
        "Fn::Sub": "${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    }
    assert origin["OriginPath"] == {"Fn::Sub": "/${Stage}"}
    custom = origin["CustomOriginConfig"]
    assert custom["OriginProtocolPolicy"] == "https-only"
    assert custom["OriginSSLProtocols"] == ["TLSv1.2"]
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] in {"https-only", "redirect-to-https"}
    assert behavior["CachePolicyId"] == CACHING_DISABLED
    # AllViewerExceptHostHeader forwards Authorization, x-api-key, Idempotency-Key and
    # Content-Type (every viewer header but Host, which must stay the execute-api name).
    assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST
    assert {"POST", "GET"} <= set(behavior["AllowedMethods"])
    cert = config["ViewerCertificate"]["Fn::If"]
    assert cert[0] == "HasEdgeDomain"
    assert cert[1]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert cert[1]["SslSupportMethod"] == "sni-only"
    assert cert[2] == {"CloudFrontDefaultCertificate": True}
    assert config["Logging"]["Fn::If"][0] == "HasEdgeLogBucket"
    assert config["WebACLId"] == {
        "Fn::If": ["EdgeHasWebAcl", {"Ref": "EdgeWebAclArn"}, {"Ref": "AWS::NoValue"}]
    }


def _origin_secret_refs() -> tuple[str, str]:
    (origin,) = props("EdgeDistribution")["DistributionConfig"]["Origins"]
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"] == "x-origin-verify"
    rule = props("ApiWebAcl")["Rules"][0]["Fn::If"]
    assert rule[0] == "EdgeEnabled"
    match = rule[1]["Statement"]["NotStatement"]["Statement"]["ByteMatchStatement"]
    assert match["FieldToMatch"] == {"SingleHeader": {"Name": "x-origin-verify"}}
    assert match["PositionalConstraint"] == "EXACTLY"
    assert rule[1]["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 403
    return header["HeaderValue"]["Fn::Sub"], match["SearchString"]["Fn::Sub"]


def test_api_accepts_only_requests_carrying_cloudfronts_secret_header() -> None:
    sent, checked = _origin_secret_refs()
    expected = "{{resolve:secretsmanager:${OriginVerifySecret}:SecretString}}"
    assert sent == checked == expected
    secret = props("OriginVerifySecret")
    assert refs_key(secret["KmsKeyId"])
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    association = props("ApiWebAclAssociation")
    assert "/restapis/${Api}/stages/${Api.Stage}" in association["ResourceArn"]["Fn::Sub"]
    assert association["WebACLArn"] == {"Fn::GetAtt": ["ApiWebAcl", "Arn"]}


def _rules(acl: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rule in props(acl)["Rules"]:
        body = rule["Fn::If"][1] if "Fn::If" in rule else rule
        out[body["Name"]] = body
    return out


@pytest.mark.parametrize("acl", ["EdgeWebAcl", "ApiWebAcl"])
def test_web_acls_have_managed_rules_rate_limit_and_metrics(acl: str) -> None:
    rules = _rules(acl)
    groups = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]
        for r in rules.values()
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= groups
    rate = rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]
    assert rate["Limit"] == {"Ref": "WafRateLimit"}
    assert props(acl)["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True
    for rule in rules.values():
        assert rule["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True


def test_regional_managed_rules_apply_when_no_edge_acl_protects_the_api() -> None:
    conditions = {
        rule["Fn::If"][1]["Name"]: rule["Fn::If"][0]
        for rule in props("ApiWebAcl")["Rules"]
        if "Fn::If" in rule
    }
    assert conditions["RateLimitPerIp"] == "RegionalManagedRules"
    assert conditions["CommonRuleSet"] == "RegionalManagedRules"
    assert template()["Conditions"]["RegionalManagedRules"] == {
        "Fn::Not": [{"Condition": "EdgeHasWebAcl"}]
    }


def test_waf_logs_redact_credentials_and_the_origin_secret() -> None:
    configs = [
        r
        for t in (template(), edge_template())
        for r in t["Resources"].values()
        if r["Type"] == "AWS::WAFv2::LoggingConfiguration"
    ]
    assert len(configs) == 2  # the regional ACL's and the edge ACL's
    for logging_config in configs:
        redacted = {
            f["SingleHeader"]["Name"] for f in logging_config["Properties"]["RedactedFields"]
        }
        assert {"authorization", "x-api-key"} <= redacted
    assert "x-origin-verify" in {
        f["SingleHeader"]["Name"] for f in props("ApiWafLogging")["RedactedFields"]
    }


def test_regional_rate_limit_keys_on_the_address_cloudfront_saw() -> None:
    """Behind CloudFront the rule counts x-viewer-ip, which EdgeViewerIpFunction sets from the
    connection (tests/unit/test_edge_function.py), never X-Forwarded-For, which a client can
    prepend to; without the edge, the source address itself."""
    rule = _rules("ApiWebAcl")["RateLimitPerIp"]
    rate = rule["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == {"Fn::If": ["EdgeEnabled", "CUSTOM_KEYS", "IP"]}
    assert rate["CustomKeys"] == {
        "Fn::If": [
            "EdgeEnabled",
            [
                {
                    "Header": {
                        "Name": "x-viewer-ip",
                        "TextTransformations": [{"Priority": 0, "Type": "NONE"}],
                    }
                }
            ],
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert "ForwardedIPConfig" not in rate
    assert "FORWARDED_IP" not in json.dumps(props("ApiWebAcl"))
    assert "X-Forwarded-For".lower() not in json.dumps(props("ApiWebAcl")).lower()
    # A request without x-viewer-ip is not counted by a CUSTOM_KEYS rule: only requests that
    # skipped CloudFront lack it, and the origin check blocks those before the rate rule.
    assert _rules("ApiWebAcl")["OnlyThroughCloudFront"]["Priority"] < rule["Priority"]
    # At the edge the source address is the viewer's own.
    edge = _rules("EdgeWebAcl")["RateLimitPerIp"]["Statement"]["RateBasedStatement"]
    assert edge["AggregateKeyType"] == "IP"


def test_no_shared_api_key_each_tenant_gets_its_own_plan() -> None:
    """One shared key and plan let one tenant spend everyone's quota: the stack creates none;
    `admin put-tenant` makes a key and a plan per tenant from these outputs and defaults."""
    kinds = {r["Type"] for r in template()["Resources"].values()}
    assert not kinds & {
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
    }
    outputs = template()["Outputs"]
    assert "ApiKeyId" not in outputs
    assert outputs["ApiId"]["Value"] == {"Ref": "Api"}
    assert outputs["ApiStage"]["Value"] == {"Ref": "Api.Stage"}
    for output, parameter in (
        ("TenantPlanRateLimit", "ApiRateLimit"),
        ("TenantPlanBurstLimit", "ApiBurstLimit"),
        ("TenantPlanQuotaPerDay", "ApiQuotaPerDay"),
    ):
        assert outputs[output]["Value"] == {"Ref": parameter}
        assert template()["Parameters"][parameter]["Type"] == "Number"
    (setting,) = props("Api")["MethodSettings"]
    assert setting["ThrottlingRateLimit"] > 0 and setting["DataTraceEnabled"] is False


def test_app_client_signs_in_by_srp_only_and_users_may_enrol_totp() -> None:
    client = props("UserPoolClient")
    assert client["ExplicitAuthFlows"] == ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    assert client["GenerateSecret"] is False
    pool = props("UserPool")
    assert pool["MfaConfiguration"] == "OPTIONAL"
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]


def _dynamodb_grants(function: str) -> dict[str, set[str]]:
    """Table logical id -> the DynamoDB actions the function's inline statements grant on it."""
    grants: dict[str, set[str]] = {}
    for policy in props(function)["Policies"]:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            table = statement["Resource"].get("Fn::GetAtt", [""])[0]
            for action in actions:
                if action.startswith("dynamodb:"):
                    grants.setdefault(table, set()).add(action)
    return grants


def test_api_functions_get_exactly_the_dynamodb_calls_they_make() -> None:
    """No SAM DynamoDB policy template: their BatchWriteItem would let EmitFn delete RPS
    counters (numbers handed out twice), their Scan/Query read every tenant's items."""
    for function in ("EmitFn", "GetFn"):
        templates = {
            name
            for policy in props(function)["Policies"]
            if isinstance(policy, dict)
            for name in policy
            if name.startswith("DynamoDB")
        }
        assert templates == set(), function
    emit = _dynamodb_grants("EmitFn")
    assert emit["RpsCountersTable"] == {"dynamodb:UpdateItem"}
    assert emit["TenantsTable"] == {"dynamodb:GetItem"}
    assert emit["IdempotencyTable"] == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem"} <= emit["InvoicesTable"]
    for actions in emit.values():
        assert not {a for a in actions if a.startswith(("dynamodb:Batch", "dynamodb:Scan"))}
    assert _dynamodb_grants("GetFn") == {"InvoicesTable": {"dynamodb:GetItem"}}


# ---------------------------------------------------------------- encryption ----


def test_every_log_group_is_encrypted_with_the_stack_key() -> None:
    groups = resources("AWS::Logs::LogGroup")
    assert len(groups) >= 7
    for lid, group in groups.items():
        assert refs_key(group["Properties"].get("KmsKeyId")), lid
        assert group["Properties"].get("RetentionInDays"), lid


def test_queues_tables_bucket_topic_and_secrets_use_the_stack_key() -> None:
    for lid, queue in resources("AWS::SQS::Queue").items():
        assert refs_key(queue["Properties"].get("KmsMasterKeyId")), lid
        assert "SqsManagedSseEnabled" not in queue["Properties"], lid
    for lid, table in resources("AWS::DynamoDB::Table").items():
        sse = table["Properties"]["SSESpecification"]
        assert sse["SSEType"] == "KMS" and refs_key(sse["KMSMasterKeyId"]), lid
    rule = props("DocsBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert refs_key(rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"])
    assert refs_key(props("AlarmTopic")["KmsMasterKeyId"])
    assert refs_key(props("DbCluster")["MasterUserSecret"]["KmsKeyId"])
    assert refs_key(props("DbCluster")["KmsKeyId"])
    for lid, secret in resources("AWS::SecretsManager::Secret").items():
        assert refs_key(secret["Properties"]["KmsKeyId"]), lid
    assert refs_key(template()["Globals"]["Function"]["KmsKeyArn"])


def test_key_policy_lets_logs_and_cloudwatch_use_the_key() -> None:
    statements = {s["Sid"]: s for s in props("KmsKey")["KeyPolicy"]["Statement"]}
    logs = statements["CloudWatchLogsEncryption"]
    assert logs["Principal"]["Service"] == {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    assert "kms:GenerateDataKey*" in logs["Action"]
    assert statements["CloudWatchAlarmsToEncryptedTopic"]["Principal"]["Service"] == (
        "cloudwatch.amazonaws.com"
    )
    assert props("KmsKey")["EnableKeyRotation"] is True


def test_bucket_and_queues_refuse_plain_http() -> None:
    for policy, target in (("DocsBucketPolicy", "s3:*"), ("QueuesPolicy", "sqs:*")):
        (statement,) = props(policy)["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny" and statement["Action"] == target
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# ------------------------------------------------------------------- secrets ----

SECRET_NAME = re.compile(r"PASSWORD|SECRET|PFX|PRIVATE|TOKEN|CREDENTIAL|API_?KEY", re.IGNORECASE)
# A name may mention a secret when it carries where the secret is, never the secret.
REFERENCE_SUFFIXES = ("_ARN", "_PREFIX", "_NAME", "_ID")


def environments() -> dict[str, dict[str, Any]]:
    envs: dict[str, dict[str, Any]] = {
        "Globals": template()["Globals"]["Function"]["Environment"]["Variables"]
    }
    for lid, fn in resources("AWS::Serverless::Function").items():
        envs[lid] = fn["Properties"].get("Environment", {}).get("Variables", {})
    for lid, task in resources("AWS::ECS::TaskDefinition").items():
        for container in task["Properties"]["ContainerDefinitions"]:
            envs[f"{lid}/{container['Name']}"] = {
                e["Name"]: e["Value"] for e in container.get("Environment", [])
            }
            # ECS would put the secret's value in the environment.
            assert "Secrets" not in container, lid
    return envs


def _no_echo_parameters() -> set[str]:
    return {
        n for n, p in template()["Parameters"].items() if str(p.get("NoEcho")).lower() == "true"
    }


@pytest.mark.parametrize("owner", sorted(environments()))
def test_environment_carries_names_and_arns_never_secret_values(owner: str) -> None:
    for name, value in environments()[owner].items():
        text = json.dumps(value)
        assert "{{resolve:" not in text, (owner, name)
        assert "SecretString" not in text, (owner, name)
        for ref in _no_echo_parameters():
            assert f'"{ref}"' not in text, (owner, name)
        if SECRET_NAME.search(name):
            assert name.endswith(REFERENCE_SUFFIXES), (owner, name)
            assert isinstance(value, dict), f"{owner}.{name}: a literal where a reference goes"


def test_certificate_secret_prefix_is_a_name_and_the_secrets_live_outside_the_stack() -> None:
    prefix = template()["Parameters"]["CertSecretPrefix"]
    assert "Default" in prefix and "/" in prefix["Default"]
    assert "KmsKeyArn" in prefix["Description"]
    # No certificate (PKCS#12) or password is ever a template resource.
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert not re.search(r"(?<!Generate)SecretString\s*:", text)
    assert not re.search(r"(?im)^\s*(MasterUser)?Password\s*:", text)


def test_logs_and_events_leave_payloads_out() -> None:
    globals_env = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert globals_env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    logging_config = props("EmissionStateMachine")["Logging"]
    assert logging_config["IncludeExecutionData"] is False


@mock_aws
def test_secrets_manager_store_never_logs_or_raises_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="nfse_core")
    client = boto3.client("secretsmanager", region_name="us-east-1")
    pfx = generate_a1_certificate(CNPJ, "the-right-password-9")
    client.create_secret(
        Name=f"nfse/certificates/{CNPJ}",
        SecretString=json.dumps(
            {"pfx": base64.b64encode(pfx).decode(), "password": "a-wrong-password-7"}
        ),
    )
    store = SecretsManagerCertificateStore(client_factory=lambda: client)
    with pytest.raises(CertificateInvalid) as info:
        store.get(CNPJ)
    rendered = f"{info.value} {info.value!r} {info.value.__context__!r} {info.value.__cause__!r}"
    for secret in ("a-wrong-password-7", "the-right-password-9"):
        assert secret not in rendered
        assert secret not in caplog.text


def test_a_loaded_certificate_does_not_print_its_key() -> None:
    pfx = generate_a1_certificate(CNPJ, "pw-123456")
    certificate: Certificate = load_pkcs12(CNPJ, pfx, b"pw-123456")
    assert "key=" not in repr(certificate)
    assert "PRIVATE" not in repr(certificate)


def test_certificates_module_logs_nothing_about_secrets() -> None:
    source = (ROOT / "nfse_core" / "providers" / "certificates.py").read_text(encoding="utf-8")
    # No logger at all: errors carry the CNPJ and the secret id, raised without their cause.
    assert not re.search(r"\blog(ger)?\.\w+\(|logging\.getLogger|print\(", source)


def test_the_worker_keeps_botocore_quiet() -> None:
    """botocore logs response bodies (a GetSecretValue answer) at DEBUG: never let it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("DEBUG")
        assert logging.getLogger("botocore").getEffectiveLevel() >= logging.WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
