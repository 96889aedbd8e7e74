"""Small control tables: the atomic RPS counter and the tenant -> CNPJs directory."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


class RpsCounter:
    """Per prestador and series, `UpdateItem ADD`: atomic, so a number is never handed out twice."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def next(self, cnpj: str, serie: str) -> int:
        answer = self._ddb.update_item(
            TableName=self._table,
            Key={"counterId": {"S": f"{cnpj}#{serie}"}},
            UpdateExpression="ADD lastNumber :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["lastNumber"]["N"])


# A tenant id: what the users' custom:tenant_id holds (the pool allows 1 to 64 characters). No
# "#", so no tenant id can be the key of a CNPJ claim item ("cnpj#<cnpj>") in the same table.
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CLAIM_PREFIX = "cnpj#"


class CnpjTaken(ValueError):
    """The CNPJ already belongs to another tenant."""

    def __init__(self, cnpj: str, owner: str) -> None:
        super().__init__(f"CNPJ {cnpj} already belongs to tenant {owner!r}; remove it there first")
        self.cnpj = cnpj
        self.owner = owner


class TenantDirectory:
    """Which CNPJs (companies) each tenant owns; a CNPJ belongs to at most one tenant.

    TenantsTable holds two kinds of item, both keyed by `tenantId`:
    - a tenant: `{tenantId, name, cnpjs (SS), revision (N), apiKeyId?}`;
    - a claim: `{tenantId: "cnpj#<cnpj>", owner: <tenant id>}`, one per owned CNPJ. A claim
      has no `cnpjs`, so `cnpjs_of` of a claim key is empty: a user whose token named one
      could emit for nothing.
    `put_tenant` writes the tenant and its claims in one transaction, each claim conditional
    on being free or already the tenant's, so two tenants never own one CNPJ.
    """

    # TransactWriteItems takes at most 100 items: the claims, the released claims, the tenant.
    MAX_TRANSACTION_ITEMS = 100
    _ATTEMPTS = 3  # a concurrent change to the same tenant makes the transaction fail: re-read

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def cnpjs_of(self, tenant_id: str) -> frozenset[str]:
        item = self._directory_item(tenant_id) or {}
        return frozenset(item.get("cnpjs", {}).get("SS", []))

    @staticmethod
    def is_tenant_id(tenant_id: str) -> bool:
        return TENANT_ID_PATTERN.fullmatch(tenant_id) is not None

    def put_tenant(self, tenant_id: str, cnpjs: Iterable[str], name: str = "") -> None:
        """Create or update the tenant with exactly these CNPJs and this name.

        Raises CnpjTaken (naming the CNPJ and its owner) when another tenant owns one of them;
        then nothing is written. CNPJs the tenant no longer lists are released. Other
        attributes of the tenant item (apiKeyId) are kept.
        """
        if not self.is_tenant_id(tenant_id):
            raise ValueError(f"tenant id {tenant_id!r} must match {TENANT_ID_PATTERN.pattern}")
        wanted = sorted(set(cnpjs))
        for _ in range(self._ATTEMPTS):
            if self._write_claims(
                tenant_id, wanted, name or tenant_id, self._directory_item(tenant_id)
            ):
                return
        raise RuntimeError(f"tenant {tenant_id!r} kept changing during the update; run it again")

    def owner_of_cnpj(self, cnpj: str) -> str | None:
        """The tenant that owns the CNPJ (its claim item), or None."""
        item = self._directory_item(f"{CLAIM_PREFIX}{cnpj}")
        return None if item is None else item["owner"]["S"]

    def api_key_id_of(self, tenant_id: str) -> str | None:
        """The id of the tenant's API Gateway key, as `record_api_key_id` wrote it."""
        item = self._directory_item(tenant_id)
        return None if item is None or "apiKeyId" not in item else item["apiKeyId"]["S"]

    def record_api_key_id(self, tenant_id: str, api_key_id: str) -> None:
        """Note the tenant's API key id on its item (which must exist: put_tenant first)."""
        self._ddb.update_item(
            TableName=self._table,
            Key={"tenantId": {"S": tenant_id}},
            UpdateExpression="SET apiKeyId = :key",
            ConditionExpression="attribute_exists(tenantId)",
            ExpressionAttributeValues={":key": {"S": api_key_id}},
        )

    def _directory_item(self, key: str) -> dict[str, Any] | None:
        answer = self._ddb.get_item(
            TableName=self._table, Key={"tenantId": {"S": key}}, ConsistentRead=True
        )
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _write_claims(
        self, tenant_id: str, wanted: list[str], name: str, current: dict[str, Any] | None
    ) -> bool:
        """One transaction: claim `wanted`, release what the tenant dropped, write the tenant.
        False when a concurrent change to the same tenant or its claims cancelled it."""
        held = set((current or {}).get("cnpjs", {}).get("SS", []))
        # Only claims that are the tenant's are released (data written before claims existed
        # may list a CNPJ another tenant has since claimed); each delete re-checks the owner.
        released = [c for c in sorted(held - set(wanted)) if self.owner_of_cnpj(c) == tenant_id]
        tenant_key = {":tenant": {"S": tenant_id}}
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"tenantId": {"S": f"{CLAIM_PREFIX}{cnpj}"}, "owner": {"S": tenant_id}},
                    "ConditionExpression": "attribute_not_exists(tenantId) OR #owner = :tenant",
                    "ExpressionAttributeNames": {"#owner": "owner"},
                    "ExpressionAttributeValues": tenant_key,
                    # The current owner comes back in the cancellation reason, for the error.
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
            for cnpj in wanted
        ]
        items += [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": {"tenantId": {"S": f"{CLAIM_PREFIX}{cnpj}"}},
                    "ConditionExpression": "#owner = :tenant",
                    "ExpressionAttributeNames": {"#owner": "owner"},
                    "ExpressionAttributeValues": tenant_key,
                }
            }
            for cnpj in released
        ]
        items.append(self._tenant_update(tenant_id, wanted, name, current))
        if len(items) > self.MAX_TRANSACTION_ITEMS:
            raise ValueError(
                f"{len(wanted)} CNPJs and {len(released)} released in one update is over"
                f" DynamoDB's {self.MAX_TRANSACTION_ITEMS} items per transaction; split it"
            )
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except self._ddb.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            for cnpj, reason in zip(wanted, reasons, strict=False):
                if reason.get("Code") == "ConditionalCheckFailed":
                    owner = (reason.get("Item") or {}).get("owner", {}).get("S", "another tenant")
                    raise CnpjTaken(cnpj, owner) from exc
            return False
        return True

    def _tenant_update(
        self, tenant_id: str, wanted: list[str], name: str, current: dict[str, Any] | None
    ) -> dict[str, Any]:
        """An Update (not a Put: apiKeyId stays) conditional on the revision read, so a
        concurrent put_tenant of the same tenant cancels this one instead of being undone."""
        values: dict[str, Any] = {":name": {"S": name}, ":one": {"N": "1"}}
        if wanted:
            expression = "SET #name = :name, cnpjs = :cnpjs ADD #revision :one"
            values[":cnpjs"] = {"SS": wanted}
        else:
            expression = "SET #name = :name ADD #revision :one REMOVE cnpjs"
        if current is None:
            condition = "attribute_not_exists(tenantId)"
        elif "revision" in current:
            condition = "#revision = :revision"
            values[":revision"] = current["revision"]
        else:  # written before revisions existed
            condition = "attribute_exists(tenantId) AND attribute_not_exists(#revision)"
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"tenantId": {"S": tenant_id}},
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#name": "name", "#revision": "revision"},
                "ExpressionAttributeValues": values,
            }
        }
