"""Tenants against moto: a CNPJ belongs to one tenant at most (claim items in TenantsTable,
written in one transaction with the tenant), and `admin put-tenant` gives each tenant its own
API key and usage plan on the API stage, once.

TenantsTable comes from template.yaml with the sample tenants seeded (the `resources` fixture):
acme owns 11222333000181 and 12ABC34501DE35, globex owns 11444777000161. moto's API Gateway
is configuration only: these tests check what is configured (keys, plans, stages), not that a
request is metered.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest

from nfse_core.store.control import CLAIM_PREFIX, CnpjTaken, TenantDirectory
from nfse_local import admin
from nfse_local.admin import AdminError, ApiTarget
from nfse_local.resources import LocalResources

pytestmark = pytest.mark.integration

ACME_CNPJ, ACME_ALNUM = "11222333000181", "12ABC34501DE35"
GLOBEX_CNPJ = "11444777000161"
FREE_CNPJ = "45997418000153"  # valid, owned by nobody
OTHER_FREE_CNPJ = "04252011000110"


@pytest.fixture
def ddb(resources: LocalResources) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def directory(resources: LocalResources, ddb: Any) -> TenantDirectory:
    return TenantDirectory(ddb, resources.tenants_table)


def claims(ddb: Any, table: str) -> dict[str, str]:
    """Every claim item: CNPJ -> owner."""
    items = ddb.scan(TableName=table)["Items"]
    return {
        i["tenantId"]["S"].removeprefix(CLAIM_PREFIX): i["owner"]["S"]
        for i in items
        if i["tenantId"]["S"].startswith(CLAIM_PREFIX)
    }


def assert_claims_match_tenants(ddb: Any, table: str) -> None:
    """The invariant: the claims are exactly the tenants' CNPJ lists, one owner each."""
    listed: dict[str, str] = {}
    for item in ddb.scan(TableName=table)["Items"]:
        if item["tenantId"]["S"].startswith(CLAIM_PREFIX):
            continue
        for cnpj in item.get("cnpjs", {}).get("SS", []):
            assert cnpj not in listed, f"{cnpj} listed by {listed.get(cnpj)} and another"
            listed[cnpj] = item["tenantId"]["S"]
    assert claims(ddb, table) == listed


# ------------------------------------------------------------------ the directory ---


def test_seeded_tenants_hold_claims_for_their_cnpjs(
    directory: TenantDirectory, ddb: Any, resources: LocalResources
) -> None:
    assert directory.cnpjs_of("acme") == {ACME_CNPJ, ACME_ALNUM}
    assert directory.owner_of_cnpj(ACME_CNPJ) == "acme"
    assert directory.owner_of_cnpj(GLOBEX_CNPJ) == "globex"
    assert directory.owner_of_cnpj(FREE_CNPJ) is None
    assert_claims_match_tenants(ddb, resources.tenants_table)


def test_a_cnpj_of_another_tenant_is_refused_by_name_and_nothing_is_written(
    directory: TenantDirectory, ddb: Any, resources: LocalResources
) -> None:
    before = ddb.scan(TableName=resources.tenants_table)["Items"]
    with pytest.raises(CnpjTaken) as info:
        directory.put_tenant("globex", [GLOBEX_CNPJ, FREE_CNPJ, ACME_CNPJ], "Globex")
    assert info.value.cnpj == ACME_CNPJ and info.value.owner == "acme"
    assert ACME_CNPJ in str(info.value) and "acme" in str(info.value)
    # All or nothing: the free CNPJ was not claimed, globex's list did not change.
    assert directory.owner_of_cnpj(FREE_CNPJ) is None
    assert directory.cnpjs_of("globex") == {GLOBEX_CNPJ}
    after = ddb.scan(TableName=resources.tenants_table)["Items"]
    assert sorted(map(json.dumps, after)) == sorted(map(json.dumps, before))


def test_a_new_tenant_cannot_take_a_claimed_cnpj(directory: TenantDirectory) -> None:
    with pytest.raises(CnpjTaken, match=GLOBEX_CNPJ):
        directory.put_tenant("initech", [GLOBEX_CNPJ])
    assert directory.cnpjs_of("initech") == frozenset()


def test_dropped_cnpjs_are_released_and_another_tenant_may_claim_them(
    directory: TenantDirectory, ddb: Any, resources: LocalResources
) -> None:
    directory.put_tenant("acme", [ACME_CNPJ], "ACME")
    assert directory.cnpjs_of("acme") == {ACME_CNPJ}
    assert directory.owner_of_cnpj(ACME_ALNUM) is None
    directory.put_tenant("globex", [GLOBEX_CNPJ, ACME_ALNUM], "Globex")
    assert directory.owner_of_cnpj(ACME_ALNUM) == "globex"
    # A tenant left with no CNPJ releases them all and can emit for none.
    directory.put_tenant("acme", [], "ACME")
    assert directory.cnpjs_of("acme") == frozenset()
    assert directory.owner_of_cnpj(ACME_CNPJ) is None
    assert_claims_match_tenants(ddb, resources.tenants_table)


def test_put_tenant_again_is_a_no_op_and_keeps_the_api_key_id(
    directory: TenantDirectory, ddb: Any, resources: LocalResources
) -> None:
    directory.record_api_key_id("acme", "key-123")
    directory.put_tenant("acme", [ACME_ALNUM, ACME_CNPJ], "ACME renamed")
    directory.put_tenant("acme", [ACME_CNPJ, ACME_ALNUM], "ACME renamed")
    assert directory.cnpjs_of("acme") == {ACME_CNPJ, ACME_ALNUM}
    assert directory.api_key_id_of("acme") == "key-123"
    item = ddb.get_item(TableName=resources.tenants_table, Key={"tenantId": {"S": "acme"}})
    assert item["Item"]["name"]["S"] == "ACME renamed"
    assert_claims_match_tenants(ddb, resources.tenants_table)


def test_claim_items_are_never_tenants(directory: TenantDirectory) -> None:
    # A token whose custom:tenant_id named a claim item would own no CNPJ.
    assert directory.cnpjs_of(f"{CLAIM_PREFIX}{ACME_CNPJ}") == frozenset()
    with pytest.raises(ValueError, match="tenant id"):
        directory.put_tenant(f"{CLAIM_PREFIX}{FREE_CNPJ}", [FREE_CNPJ])
    assert directory.owner_of_cnpj(FREE_CNPJ) is None


def test_tenants_written_before_claims_get_them_on_their_next_put(
    directory: TenantDirectory, ddb: Any, resources: LocalResources
) -> None:
    """Items of the old blind put_item: two tenants may list one CNPJ and no claim exists.
    The first to be put again claims it; the other is refused until the CNPJ is settled."""
    for tenant in ("old-a", "old-b"):
        ddb.put_item(
            TableName=resources.tenants_table,
            Item={
                "tenantId": {"S": tenant},
                "name": {"S": tenant},
                "cnpjs": {"SS": [FREE_CNPJ]},
            },
        )
    directory.put_tenant("old-a", [FREE_CNPJ])
    assert directory.owner_of_cnpj(FREE_CNPJ) == "old-a"
    with pytest.raises(CnpjTaken, match="old-a"):
        directory.put_tenant("old-b", [FREE_CNPJ, OTHER_FREE_CNPJ])
    # old-b drops the disputed CNPJ: old-a's claim is not released by old-b's update.
    directory.put_tenant("old-b", [OTHER_FREE_CNPJ])
    assert directory.owner_of_cnpj(FREE_CNPJ) == "old-a"
    assert directory.owner_of_cnpj(OTHER_FREE_CNPJ) == "old-b"
    assert_claims_match_tenants(ddb, resources.tenants_table)


class _RacingClient:
    """The DynamoDB client, except that another put_tenant of the same tenant lands between
    this caller's read and its first transaction."""

    def __init__(self, real: Any, table: str, competing: list[str]) -> None:
        self._real = real
        self._table = table
        self._competing: list[str] | None = competing
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        competing, self._competing = self._competing, None
        if competing is not None:
            TenantDirectory(self._real, self._table).put_tenant("acme", competing, "ACME")
        return self._real.transact_write_items(**kwargs)


def test_a_concurrent_update_of_the_same_tenant_is_not_undone(
    ddb: Any, resources: LocalResources
) -> None:
    """Without the revision check the first caller's transaction would still commit, leaving
    FREE_CNPJ claimed by acme but absent from its list (an orphan claim nobody could take)."""
    racing = _RacingClient(ddb, resources.tenants_table, [ACME_CNPJ, ACME_ALNUM, FREE_CNPJ])
    directory = TenantDirectory(racing, resources.tenants_table)
    directory.put_tenant("acme", [ACME_CNPJ, OTHER_FREE_CNPJ], "ACME")
    assert racing.transactions == 2  # the first was cancelled by the revision condition
    assert directory.cnpjs_of("acme") == {ACME_CNPJ, OTHER_FREE_CNPJ}
    assert directory.owner_of_cnpj(FREE_CNPJ) is None
    assert directory.owner_of_cnpj(ACME_ALNUM) is None
    assert_claims_match_tenants(ddb, resources.tenants_table)


def test_parallel_claims_of_one_cnpj_leave_one_owner(ddb: Any, resources: LocalResources) -> None:
    directory = TenantDirectory(ddb, resources.tenants_table)
    outcomes: dict[str, str] = {}
    start = threading.Barrier(6)

    def claim(tenant: str) -> None:
        start.wait()
        try:
            directory.put_tenant(tenant, [FREE_CNPJ])
            outcomes[tenant] = "owner"
        except CnpjTaken:
            outcomes[tenant] = "refused"

    threads = [threading.Thread(target=claim, args=(f"racer-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [tenant for tenant, outcome in outcomes.items() if outcome == "owner"]
    assert len(outcomes) == 6 and len(winners) == 1
    assert directory.owner_of_cnpj(FREE_CNPJ) == winners[0]
    assert_claims_match_tenants(ddb, resources.tenants_table)


# -------------------------------------------------------------- admin put-tenant ---


@pytest.fixture
def apigw(resources: LocalResources) -> Any:
    return boto3.client("apigateway", region_name="us-east-1")


@pytest.fixture
def api(apigw: Any) -> ApiTarget:
    """A REST API with a method needing a key, deployed to a stage (what usage plans name)."""
    rest_api = apigw.create_rest_api(name="nfse-test")["id"]
    root = apigw.get_resources(restApiId=rest_api)["items"][0]["id"]
    apigw.put_method(
        restApiId=rest_api,
        resourceId=root,
        httpMethod="GET",
        authorizationType="NONE",
        apiKeyRequired=True,
    )
    apigw.put_integration(restApiId=rest_api, resourceId=root, httpMethod="GET", type="MOCK")
    apigw.create_deployment(restApiId=rest_api, stageName="dev")
    return ApiTarget(rest_api, "dev", rate_limit=20.0, burst_limit=40, quota_per_day=5000)


def plans_of(apigw: Any, name: str) -> list[dict[str, Any]]:
    return [p for p in apigw.get_usage_plans()["items"] if p["name"] == name]


def keys_of(apigw: Any, name: str) -> list[dict[str, Any]]:
    return [k for k in apigw.get_api_keys(includeValues=True)["items"] if k["name"] == name]


def test_put_tenant_gives_the_tenant_its_own_key_and_plan_once(
    apigw: Any, api: ApiTarget, directory: TenantDirectory, resources: LocalResources
) -> None:
    table = resources.tenants_table
    first = admin.put_tenant("acme", [ACME_CNPJ, ACME_ALNUM], name="ACME", table=table, api=api)
    (key,) = keys_of(apigw, api.plan_name("acme"))
    (plan,) = plans_of(apigw, api.plan_name("acme"))
    assert first["apiKey"] == key["value"] and key["enabled"] is True
    assert first["apiKeyId"] == key["id"] and first["usagePlanId"] == plan["id"]
    assert plan["apiStages"] == [{"apiId": api.rest_api_id, "stage": "dev"}]
    assert float(plan["throttle"]["rateLimit"]) == 20.0
    assert int(plan["throttle"]["burstLimit"]) == 40
    assert int(plan["quota"]["limit"]) == 5000 and plan["quota"]["period"] == "DAY"
    plan_keys = apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]
    assert [k["id"] for k in plan_keys] == [key["id"]]
    assert directory.api_key_id_of("acme") == key["id"]

    again = admin.put_tenant("acme", [ACME_CNPJ, ACME_ALNUM], name="ACME", table=table, api=api)
    assert "apiKey" not in again  # the value is printed once, when the key is made
    assert (again["apiKeyId"], again["usagePlanId"]) == (key["id"], plan["id"])
    assert len(keys_of(apigw, api.plan_name("acme"))) == 1
    assert len(plans_of(apigw, api.plan_name("acme"))) == 1
    assert len(apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]) == 1


def test_each_tenant_has_its_own_plan_with_only_its_key(
    apigw: Any, api: ApiTarget, resources: LocalResources
) -> None:
    table = resources.tenants_table
    acme = admin.put_tenant("acme", [ACME_CNPJ], table=table, api=api)
    globex = admin.put_tenant("globex", [GLOBEX_CNPJ], table=table, api=api)
    assert acme["apiKeyId"] != globex["apiKeyId"]
    assert acme["usagePlanId"] != globex["usagePlanId"]
    assert acme["apiKey"] != globex["apiKey"]
    for written in (acme, globex):
        members = apigw.get_usage_plan_keys(usagePlanId=written["usagePlanId"])["items"]
        assert [k["id"] for k in members] == [written["apiKeyId"]]


def test_a_tenant_whose_name_prefixes_another_gets_its_own_key(
    apigw: Any, api: ApiTarget, resources: LocalResources
) -> None:
    """API Gateway's nameQuery matches by prefix: acme must not reuse acme-2's key."""
    table = resources.tenants_table
    longer = admin.put_tenant("acme-2", [FREE_CNPJ], table=table, api=api)
    acme = admin.put_tenant("acme", [ACME_CNPJ], table=table, api=api)
    assert acme["apiKeyId"] != longer["apiKeyId"] and "apiKey" in acme


def test_a_rerun_with_other_limits_changes_the_plan(
    apigw: Any, api: ApiTarget, resources: LocalResources
) -> None:
    table = resources.tenants_table
    first = admin.put_tenant("globex", [GLOBEX_CNPJ], table=table, api=api)
    faster = ApiTarget(api.rest_api_id, api.stage, rate_limit=5.0, burst_limit=10, quota_per_day=99)
    admin.put_tenant("globex", [GLOBEX_CNPJ], table=table, api=faster)
    plan = apigw.get_usage_plan(usagePlanId=first["usagePlanId"])
    assert float(plan["throttle"]["rateLimit"]) == 5.0
    assert int(plan["throttle"]["burstLimit"]) == 10
    assert int(plan["quota"]["limit"]) == 99


def test_a_key_deleted_by_hand_is_made_again(
    apigw: Any, api: ApiTarget, directory: TenantDirectory, resources: LocalResources
) -> None:
    table = resources.tenants_table
    first = admin.put_tenant("acme", [ACME_CNPJ], table=table, api=api)
    apigw.delete_api_key(apiKey=first["apiKeyId"])
    second = admin.put_tenant("acme", [ACME_CNPJ], table=table, api=api)
    assert second["apiKeyId"] != first["apiKeyId"] and second["apiKey"]
    assert directory.api_key_id_of("acme") == second["apiKeyId"]
    assert second["usagePlanId"] == first["usagePlanId"]


def test_a_refused_cnpj_creates_no_key_or_plan(
    apigw: Any, api: ApiTarget, resources: LocalResources
) -> None:
    with pytest.raises(AdminError, match=f"{ACME_CNPJ}.*acme"):
        admin.put_tenant("initech", [ACME_CNPJ], table=resources.tenants_table, api=api)
    assert keys_of(apigw, api.plan_name("initech")) == []
    assert plans_of(apigw, api.plan_name("initech")) == []


def test_a_stage_that_does_not_exist_is_refused(
    apigw: Any, api: ApiTarget, directory: TenantDirectory, resources: LocalResources
) -> None:
    wrong = ApiTarget(api.rest_api_id, "prod")
    with pytest.raises(AdminError, match="no stage 'prod'"):
        admin.put_tenant("initech", [FREE_CNPJ], table=resources.tenants_table, api=wrong)
    assert plans_of(apigw, wrong.plan_name("initech")) == []
    # Refused before anything was written: the CNPJ is still free.
    assert directory.owner_of_cnpj(FREE_CNPJ) is None


@pytest.mark.parametrize(
    "tenant",
    [f"{CLAIM_PREFIX}{ACME_CNPJ}", "", "a" * 65, "acme corp", "-acme", "acme/x", "ácme"],
)
def test_tenant_ids_outside_the_pattern_are_refused(tenant: str, resources: LocalResources) -> None:
    with pytest.raises(AdminError, match="tenant id"):
        admin.put_tenant(tenant, [FREE_CNPJ], table=resources.tenants_table)


def _stack_with_outputs(api: ApiTarget, tenants_table: str) -> None:
    """A CloudFormation stack in moto whose outputs are the ones template.yaml declares."""
    outputs = {
        "ApiId": api.rest_api_id,
        "ApiStage": api.stage,
        "TenantsTableName": tenants_table,
        "TenantPlanRateLimit": "30",
        "TenantPlanBurstLimit": "60",
        "TenantPlanQuotaPerDay": "7000",
    }
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="nfse-test", TemplateBody=json.dumps(template)
    )


def test_cli_finds_the_api_and_table_in_the_stack_outputs(
    apigw: Any,
    api: ApiTarget,
    resources: LocalResources,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TENANTS_TABLE", raising=False)
    _stack_with_outputs(api, resources.tenants_table)
    code = admin.main(
        ["put-tenant", "initech", "--cnpj", "45.997.418/0001-53", "--stack", "nfse-test"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    written = json.loads(out)
    assert written["cnpjs"] == [FREE_CNPJ] and written["table"] == resources.tenants_table
    (plan,) = plans_of(apigw, api.plan_name("initech"))
    assert float(plan["throttle"]["rateLimit"]) == 30.0
    assert int(plan["quota"]["limit"]) == 7000
    (key,) = keys_of(apigw, api.plan_name("initech"))
    assert written["apiKey"] == key["value"]

    code = admin.main(["put-tenant", "initech", "--cnpj", FREE_CNPJ, "--stack", "nfse-test"])
    out, err = capsys.readouterr()
    assert code == 0 and "apiKey" not in json.loads(out)
    assert key["value"] not in out + err and key["id"] in err  # how to read it, not the value


def test_cli_refuses_a_taken_cnpj_and_a_missing_api(
    api: ApiTarget, resources: LocalResources, capsys: pytest.CaptureFixture[str]
) -> None:
    table = resources.tenants_table
    base = ["put-tenant", "initech", "--table", table]
    where = ["--rest-api-id", api.rest_api_id, "--stage", api.stage]
    code = admin.main([*base, "--cnpj", GLOBEX_CNPJ, *where])
    assert code == 2
    assert f"CNPJ {GLOBEX_CNPJ} already belongs to tenant 'globex'" in capsys.readouterr().err
    assert admin.main([*base, "--cnpj", FREE_CNPJ]) == 2
    assert "--stack" in capsys.readouterr().err
    assert admin.main([*base, "--cnpj", FREE_CNPJ, "--no-api-key"]) == 0
    assert "apiKeyId" not in json.loads(capsys.readouterr().out)
