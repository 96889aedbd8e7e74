"""Small control tables: the atomic RPS counter and the tenant -> CNPJs directory."""

from __future__ import annotations

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


class TenantDirectory:
    """Which CNPJs (companies) each tenant owns."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def cnpjs_of(self, tenant_id: str) -> frozenset[str]:
        answer = self._ddb.get_item(
            TableName=self._table, Key={"tenantId": {"S": tenant_id}}, ConsistentRead=True
        )
        item = answer.get("Item") or {}
        return frozenset(item.get("cnpjs", {}).get("SS", []))

    def put_tenant(self, tenant_id: str, cnpjs: Iterable[str], name: str = "") -> None:
        owned = sorted(set(cnpjs))
        item: dict[str, Any] = {"tenantId": {"S": tenant_id}, "name": {"S": name or tenant_id}}
        if owned:
            item["cnpjs"] = {"SS": owned}
        self._ddb.put_item(TableName=self._table, Item=item)
