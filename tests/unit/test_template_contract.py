"""template.yaml against the code it deploys: handlers exist and are callable, ASL placeholders
and DefinitionSubstitutions match, function environments cover their settings models, the
OpenAPI routes are the handlers' routes, the layer ships the project's dependencies."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws
from openapi_spec_validator import validate as validate_openapi

import nfse_core.config as config_module
import nfse_core.domain.errors as errors_module
from nfse_core.domain.models import (
    Endereco,
    EnderecoExterior,
    IbsCbs,
    Intermediario,
    InvoiceRequest,
    Retencoes,
    Tomador,
)
from nfse_local.cfn import Resolver, Unresolvable, load_template, walk_refs

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
OPENAPI_PATH = ROOT / "api" / "openapi.yaml"
FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
STATE_MACHINE_TYPES = {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}


@cache
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def resources_of(types: set[str]) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template()["Resources"].items() if res["Type"] in types}


FUNCTIONS = resources_of(FUNCTION_TYPES)
STATE_MACHINES = resources_of(STATE_MACHINE_TYPES)


def handler_file(logical_id: str) -> tuple[Path, str]:
    props = FUNCTIONS[logical_id]["Properties"]
    module, _, attribute = str(props["Handler"]).rpartition(".")
    return ROOT / str(props["CodeUri"]) / (module.replace(".", "/") + ".py"), attribute


def import_by_path(path: Path) -> Any:
    name = "_contract_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------ handlers ----


def test_template_has_the_three_functions() -> None:
    assert {"EmitFn", "GetFn", "ProcessorFn"} <= set(FUNCTIONS)


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_handler_resolves_to_a_callable(logical_id: str) -> None:
    # The handler files come from another part of the project: a missing one fails here on
    # purpose (the template would deploy a function that cannot start).
    path, attribute = handler_file(logical_id)
    assert path.is_file(), f"{logical_id}: Handler points at {path.relative_to(ROOT)}, missing"
    module = import_by_path(path)
    assert callable(getattr(module, attribute, None)), f"{path}: no callable {attribute}"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_code_dir_has_requirements(logical_id: str) -> None:
    # sam build's pip workflow reads it; dependencies themselves come from CoreLayer.
    assert (ROOT / FUNCTIONS[logical_id]["Properties"]["CodeUri"] / "requirements.txt").is_file()


def test_every_local_path_in_the_template_exists() -> None:
    paths: list[str] = []
    for res in template()["Resources"].values():
        props = res.get("Properties") or {}
        paths += [str(props[k]) for k in ("CodeUri", "ContentUri", "DefinitionUri") if k in props]
        body = props.get("DefinitionBody") or {}
        if "Fn::Transform" in body:
            paths.append(str(body["Fn::Transform"]["Parameters"]["Location"]))
    assert paths
    for path in paths:
        assert (ROOT / path).exists(), path


# ----------------------------------------------------------------- state machines ----

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def test_every_asl_file_belongs_to_a_state_machine() -> None:
    used = {
        (ROOT / res["Properties"]["DefinitionUri"]).resolve() for res in STATE_MACHINES.values()
    }
    assert {p.resolve() for p in (ROOT / "statemachine").glob("*.asl.json")} == used


@pytest.mark.parametrize("logical_id", sorted(STATE_MACHINES))
def test_asl_placeholders_and_substitutions_match(logical_id: str) -> None:
    props = STATE_MACHINES[logical_id]["Properties"]
    text = (ROOT / props["DefinitionUri"]).read_text(encoding="utf-8")
    placeholders = set(PLACEHOLDER.findall(text))
    substitutions = set(props.get("DefinitionSubstitutions") or {})
    assert placeholders, "the ASL should take its ARNs from DefinitionSubstitutions"
    assert placeholders - substitutions == set(), "placeholders without a substitution"
    assert substitutions - placeholders == set(), "substitutions the ASL does not use"


def test_emission_state_machine_is_express_with_logging() -> None:
    props = STATE_MACHINES["EmissionStateMachine"]["Properties"]
    assert props["Type"] == "EXPRESS"
    assert props["Logging"]["Level"] in {"ALL", "ERROR"}
    assert props["DefinitionSubstitutions"] == {
        "RequestsQueueUrl": {"Ref": "RequestsQueue"},
        "InvoicesTableName": {"Ref": "InvoicesTable"},
    }


# -------------------------------------------------------------------- environment ----

SETTINGS_MODELS = {
    name: obj
    for name, obj in vars(config_module).items()
    if isinstance(obj, type) and name.endswith("Settings") and hasattr(obj, "variables")
}


def settings_used_by(path: Path) -> set[str]:
    """Names of nfse_core.config settings models the module imports (and so builds)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "nfse_core.config":
            used |= {alias.name for alias in node.names if alias.name in SETTINGS_MODELS}
    return used


def required_aliases(model: Any) -> set[str]:
    return set(model.variables(required_only=True))


def all_aliases(model: Any) -> set[str]:
    return set(model.variables())


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_function_environment_covers_its_settings(logical_id: str) -> None:
    path, _ = handler_file(logical_id)
    assert path.is_file(), f"{path.relative_to(ROOT)} missing"
    models = settings_used_by(path)
    assert models, f"{logical_id}: the handler builds no settings model from nfse_core.config"
    env = set((FUNCTIONS[logical_id]["Properties"].get("Environment") or {}).get("Variables") or {})
    for name in models:
        missing = required_aliases(SETTINGS_MODELS[name]) - env
        assert not missing, f"{logical_id} lacks {sorted(missing)} needed by {name}"


def test_emit_environment_sets_every_api_setting() -> None:
    # EmitFn builds ApiSettings: the template states every value, defaults included, so a
    # deployed function never runs on a default nobody chose.
    env = set(FUNCTIONS["EmitFn"]["Properties"]["Environment"]["Variables"])
    assert all_aliases(SETTINGS_MODELS["ApiSettings"]) == env


def test_get_environment_is_a_subset_of_api_settings() -> None:
    env = set(FUNCTIONS["GetFn"]["Properties"]["Environment"]["Variables"])
    assert env <= all_aliases(SETTINGS_MODELS["ApiSettings"])


def test_worker_environment_names() -> None:
    task = template()["Resources"]["WorkerTaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    names = {item["Name"] for item in container["Environment"]}
    assert {
        "REQUESTS_QUEUE_URL",
        "INVOICES_TABLE",
        "DOCS_BUCKET",
        "DB_CLUSTER_ARN",
        "DB_SECRET_ARN",
        "DB_NAME",
        "CERT_SECRET_PREFIX",
        "PROVIDER_ENVIRONMENT",
        "WORKER_CONCURRENCY",
    } <= names


def test_processor_environment_names() -> None:
    env = set(FUNCTIONS["ProcessorFn"]["Properties"]["Environment"]["Variables"])
    assert {
        "INVOICES_TABLE",
        "DOCS_BUCKET",
        "DLQ_URL",
        "DB_CLUSTER_ARN",
        "DB_SECRET_ARN",
        "DB_NAME",
        "CERT_SECRET_PREFIX",
        "PROVIDER_ENVIRONMENT",
    } <= env


# ------------------------------------------------------------------------- the API ----

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
INTEGRATION_FUNCTION = re.compile(r"\$\{(\w+)\.Arn\}")


@cache
def openapi() -> dict[str, Any]:
    document = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def openapi_routes() -> dict[str, set[tuple[str, str]]]:
    """function logical id -> {(METHOD, /path)} from the x-amazon-apigateway-integration URIs."""
    routes: dict[str, set[tuple[str, str]]] = {}
    for path, item in openapi()["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            match = INTEGRATION_FUNCTION.search(uri)
            assert match, f"{method} {path}: integration does not name a function"
            routes.setdefault(match.group(1), set()).add((method.upper(), path))
    return routes


def handler_routes(path: Path) -> set[tuple[str, str]]:
    """Routes a Powertools resolver registers: @app.get("/invoices/<invoiceId>") etc."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr in HTTP_METHODS
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
            ):
                route = re.sub(r"<(\w+)>", r"{\1}", str(decorator.args[0].value))
                found.add((decorator.func.attr.upper(), route))
    return found


def test_openapi_is_valid_openapi_3() -> None:
    assert str(openapi()["openapi"]).startswith("3.0")
    validate_openapi(openapi())


def test_openapi_routes_are_the_contract() -> None:
    routes = openapi_routes()
    assert routes == {
        "EmitFn": {("POST", "/invoices")},
        "GetFn": {("GET", "/invoices/{invoiceId}")},
    }


@pytest.mark.parametrize("logical_id", ["EmitFn", "GetFn"])
def test_handler_routes_match_openapi(logical_id: str) -> None:
    path, _ = handler_file(logical_id)
    assert path.is_file(), f"{path.relative_to(ROOT)} missing"
    assert handler_routes(path) == openapi_routes()[logical_id]


def test_every_integrated_function_may_be_invoked_by_its_routes_only() -> None:
    permissions = [
        res["Properties"]
        for res in template()["Resources"].values()
        if res["Type"] == "AWS::Lambda::Permission"
    ]
    for function, routes in openapi_routes().items():
        patterns = [
            str(p["SourceArn"]["Fn::Sub"]).rsplit("}", 1)[1]
            for p in permissions
            if p["FunctionName"] == {"Ref": function}
        ]
        assert patterns, f"{function}: API Gateway may not invoke it"
        for method, path in routes:
            wanted = "/*/" + method + re.sub(r"\{\w+\}", "*", path)
            assert wanted in patterns, (function, wanted, patterns)


def test_openapi_security_and_validation() -> None:
    doc = openapi()
    assert doc["security"] == [{"api_key": [], "cognito": []}]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    authorizer = schemes["cognito"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "cognito_user_pools"
    assert authorizer["providerARNs"] == [{"Fn::GetAtt": ["UserPool", "Arn"]}]
    assert doc["x-amazon-apigateway-api-key-source"] == "HEADER"
    validator = doc["x-amazon-apigateway-request-validators"][
        doc["x-amazon-apigateway-request-validator"]
    ]
    assert validator == {"validateRequestBody": True, "validateRequestParameters": True}


def test_openapi_request_schema_matches_the_model() -> None:
    schemas = openapi()["components"]["schemas"]
    for model, name in (
        (InvoiceRequest, "InvoiceRequest"),
        (Tomador, "Tomador"),
        (Endereco, "Endereco"),
        (EnderecoExterior, "EnderecoExterior"),
        (Intermediario, "Intermediario"),
        (Retencoes, "Retencoes"),
        (IbsCbs, "IbsCbs"),
    ):
        schema = schemas[name]
        aliases = {str(info.alias or field) for field, info in model.model_fields.items()}
        required = {
            str(info.alias or field)
            for field, info in model.model_fields.items()
            if info.is_required()
        }
        assert set(schema["properties"]) == aliases, name
        assert set(schema.get("required", [])) == required, name
        assert schema["additionalProperties"] is False, name  # the models forbid extras


def test_openapi_error_codes_cover_the_domain_errors() -> None:
    codes = set(
        openapi()["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
            "enum"
        ]
    )
    domain = {
        cls("x").code
        for cls in vars(errors_module).values()
        if isinstance(cls, type)
        and issubclass(cls, errors_module.NfseError)
        and cls is not errors_module.NfseError
    }
    assert domain, "no domain errors found"
    assert domain <= codes


def test_api_includes_the_openapi_file() -> None:
    api = template()["Resources"]["Api"]["Properties"]
    include = api["DefinitionBody"]["Fn::Transform"]
    assert include["Name"] == "AWS::Include"
    assert include["Parameters"]["Location"] == "api/openapi.yaml"
    # Every resource the spec's intrinsics name exists in the template.
    for name in walk_refs(openapi()):
        assert name in template()["Resources"] or name.startswith("AWS::"), name


# ------------------------------------------------------------------ storage, queues ----


def test_tables_keys_and_protection() -> None:
    expected = {
        "InvoicesTable": "invoiceId",
        "RpsCountersTable": "counterId",
        "TenantsTable": "tenantId",
        "IdempotencyTable": "id",
    }
    tables = resources_of({"AWS::DynamoDB::Table"})
    assert set(tables) == set(expected)
    for name, key in expected.items():
        props = tables[name]["Properties"]
        assert props["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Ref": "KmsKey"},
        }
    ttl = tables["IdempotencyTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expiration", "Enabled": True}


def test_requests_queue_redrive_uses_the_parameter() -> None:
    resources = template()["Resources"]
    redrive = resources["RequestsQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["RequestsDLQ", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    assert template()["Parameters"]["MaxReceiveCount"]["Default"] == 5
    assert resources["RequestsQueue"]["Properties"]["VisibilityTimeout"] == 120
    assert resources["RequestsDLQ"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_user_pool_has_the_tenant_attribute() -> None:
    schema = template()["Resources"]["UserPool"]["Properties"]["Schema"]
    tenant = next(a for a in schema if a["Name"] == "tenant_id")
    assert tenant["AttributeDataType"] == "String"
    client = template()["Resources"]["UserPoolClient"]["Properties"]
    assert "custom:tenant_id" not in client["WriteAttributes"]  # users cannot pick their tenant


# ------------------------------------------------------------------------ the layer ----


def normalized(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_layer_ships_the_project_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = {normalized(r) for r in project["project"]["dependencies"]}
    lines = (ROOT / "layers" / "core" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    shipped = {normalized(line) for line in lines if line.strip() and not line.startswith("#")}
    assert shipped == wanted


def test_layer_builds_with_the_makefile_target() -> None:
    layer = template()["Resources"]["CoreLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert "build-CoreLayer:" in (ROOT / "Makefile").read_text(encoding="utf-8")
    for fn in FUNCTIONS.values():
        layers = (fn["Properties"].get("Layers") or []) + template()["Globals"]["Function"][
            "Layers"
        ]
        assert {"Ref": "CoreLayer"} in layers


# ------------------------------------------------------------------- the cfn module ----


def test_short_tags_become_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n"
        "  A:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      R: !Ref P\n"
        "      G: !GetAtt B.Arn\n"
        "      S: !Sub '${B.Arn}/x'\n"
        "      I: !If [C, !Join ['-', [a, b]], !Select [0, !Split [',', 'x,y']]]\n"
        "      E: !Equals [!Ref P, v]\n",
        encoding="utf-8",
    )
    props = load_template(path)["Resources"]["A"]["Properties"]
    assert props["R"] == {"Ref": "P"}
    assert props["G"] == {"Fn::GetAtt": ["B", "Arn"]}
    assert props["S"] == {"Fn::Sub": "${B.Arn}/x"}
    assert props["I"] == {
        "Fn::If": [
            "C",
            {"Fn::Join": ["-", ["a", "b"]]},
            {"Fn::Select": [0, {"Fn::Split": [",", "x,y"]}]},
        ]
    }
    assert sorted(walk_refs(props)) == ["B", "B", "P", "P"]


def test_resolver_evaluates_parameters_conditions_and_resources() -> None:
    resolver = Resolver.for_template(
        template(),
        overrides={"Stage": "prod"},
        region="sa-east-1",
        account_id="123456789012",
        stack_name="nfse",
    )
    resolver.created("KmsKey", "key-1", {"Arn": "arn:aws:kms:sa-east-1:123456789012:key/key-1"})
    assert resolver.condition("IsProd") is True
    assert resolver.condition("ScheduleEnabled") is True  # ProcessorFn's schedule is on by default
    assert resolver.resolve({"Ref": "MaxReceiveCount"}) == "5"
    assert resolver.resolve({"Fn::If": ["IsProd", 0.5, 0]}) == 0.5
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-${KmsKey.Arn}-${!Literal}"}) == (
        "nfse-arn:aws:kms:sa-east-1:123456789012:key/key-1-${Literal}"
    )
    assert resolver.resolve(["a", {"Ref": "AWS::NoValue"}]) == ["a"]
    with pytest.raises(Unresolvable):
        resolver.resolve({"Fn::GetAtt": ["DbCluster", "DBClusterArn"]})
    with pytest.raises(Unresolvable):
        resolver.resolve({"Ref": "WorkerImageUri"})  # no default, no override
    with pytest.raises(ValueError, match="undeclared"):
        Resolver.for_template(
            template(), overrides={"Nope": "1"}, region="r", account_id="1", stack_name="s"
        )


# -------------------------------------------------------------- edge companion ----

EDGE_TEMPLATE_PATH = ROOT / "edge" / "template.yaml"
ACCOUNT = "123456789012"


@cache
def edge_template() -> dict[str, Any]:
    return load_template(EDGE_TEMPLATE_PATH)


def edge_resolver(region: str = "us-east-1") -> Resolver:
    return Resolver.for_template(
        edge_template(), region=region, account_id=ACCOUNT, stack_name="nfse-dev-edge"
    )


def main_resolver(**overrides: str) -> Resolver:
    return Resolver.for_template(
        template(),
        overrides={"WorkerImageUri": "img", **overrides},
        region="sa-east-1",
        account_id=ACCOUNT,
        stack_name="nfse-dev",
    )


def test_the_edge_companion_is_a_cloudfront_web_acl_only_deployable_in_us_east_1() -> None:
    edge = edge_template()
    assert "Transform" not in edge  # plain CloudFormation: `aws cloudformation deploy` takes it
    acl = edge["Resources"]["EdgeWebAcl"]
    assert acl["Type"] == "AWS::WAFv2::WebACL"
    assert acl["Properties"]["Scope"] == "CLOUDFRONT"
    assert edge["Outputs"]["WebAclArn"]["Value"] == {"Fn::GetAtt": ["EdgeWebAcl", "Arn"]}
    (assertion,) = edge["Rules"]["OnlyInUsEast1"]["Assertions"]
    assert edge_resolver("us-east-1").resolve(assertion["Assert"]) is True
    assert edge_resolver("sa-east-1").resolve(assertion["Assert"]) is False


def _managed_rules(rules: list[Any]) -> dict[str, Any]:
    """Managed rule groups by name, with their overrides and priority."""
    found: dict[str, Any] = {}
    for rule in rules:
        body = rule["Fn::If"][1] if "Fn::If" in rule else rule
        group = body["Statement"].get("ManagedRuleGroupStatement")
        if group is not None:
            found[group["Name"]] = (body["Priority"], group.get("RuleActionOverrides"))
    return found


def test_the_edge_acl_runs_what_the_regional_acl_runs_without_it() -> None:
    """Without EdgeWebAclArn the regional ACL runs the managed rules and the rate limit itself:
    the companion must run the same ones, with the same overrides, limit and 429 body."""
    edge = edge_template()["Resources"]["EdgeWebAcl"]["Properties"]
    regional = template()["Resources"]["ApiWebAcl"]["Properties"]
    assert _managed_rules(edge["Rules"]) == _managed_rules(regional["Rules"])
    throttled = edge["CustomResponseBodies"]["throttled"]
    assert throttled == regional["CustomResponseBodies"]["throttled"]
    (rate,) = (r for r in edge["Rules"] if r["Name"] == "RateLimitPerIp")
    assert rate["Statement"]["RateBasedStatement"]["Limit"] == {"Ref": "WafRateLimit"}
    edge_limit = edge_template()["Parameters"]["WafRateLimit"]["Default"]
    assert edge_limit == template()["Parameters"]["WafRateLimit"]["Default"]
    # The origin secret stays with the regional ACL (it checks x-origin-verify); the edge
    # stack, in another region, never reads it.
    assert "OriginVerifySecret" not in json.dumps(edge_template())


def _created_web_acl(scope: str, region: str) -> str:
    """The companion's web ACL, created (moto) from its resolved properties: its ARN."""
    props = edge_resolver().resolve(edge_template()["Resources"]["EdgeWebAcl"]["Properties"])
    props["Scope"] = scope
    for rule in props["Rules"]:  # a Number parameter: CloudFormation passes it as a number
        if "RateBasedStatement" in rule["Statement"]:
            rate = rule["Statement"]["RateBasedStatement"]
            rate["Limit"] = int(rate["Limit"])
    with mock_aws():
        wafv2 = boto3.client("wafv2", region_name=region)
        arn: str = wafv2.create_web_acl(**props)["Summary"]["ARN"]
    return arn


def test_the_main_stack_accepts_the_companions_arn_and_attaches_it() -> None:
    arn = _created_web_acl("CLOUDFRONT", "us-east-1")
    pattern = template()["Parameters"]["EdgeWebAclArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, arn), arn
    assert re.fullmatch(pattern, "")  # no edge ACL: the regional ACL runs the rules
    # A REGIONAL web ACL (e.g. one made in the main stack's region) cannot front CloudFront.
    assert not re.fullmatch(pattern, _created_web_acl("REGIONAL", "sa-east-1"))

    attached = main_resolver(EdgeWebAclArn=arn)
    assert attached.condition("EdgeHasWebAcl") is True
    assert attached.condition("RegionalManagedRules") is False
    config = template()["Resources"]["EdgeDistribution"]["Properties"]["DistributionConfig"]
    assert attached.resolve(config["WebACLId"]) == arn

    without = main_resolver()
    assert without.condition("EdgeHasWebAcl") is False
    assert without.condition("RegionalManagedRules") is True


def make_dry_run(*args: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_make_deploy_edge_deploys_the_companion_in_us_east_1_and_prints_the_arn() -> None:
    commands = make_dry_run(
        "deploy-edge", "EDGE_STACK=acme-edge", "EDGE_PARAMETERS=WafRateLimit=500"
    )
    deploy, _, shown = commands.partition("describe-stacks")
    assert "aws cloudformation deploy --region us-east-1 --stack-name acme-edge" in deploy
    assert "--template-file edge/template.yaml" in deploy
    assert "--parameter-overrides WafRateLimit=500" in deploy
    assert "--region us-east-1 --stack-name acme-edge" in shown
    assert "OutputKey=='WebAclArn'" in shown


@pytest.mark.parametrize(("target", "tool"), [("validate", "cfn-lint"), ("scan", "checkov")])
def test_make_validate_and_scan_cover_the_companion(target: str, tool: str) -> None:
    commands = make_dry_run(target).replace("\\\n", " ").splitlines()
    lines = [line for line in commands if tool in line]
    assert any("edge/template.yaml" in line for line in lines), lines
