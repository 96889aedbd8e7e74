"""Where moto differs from AWS in a way our tests depend on, made to behave like AWS.

Applied by the embedded stacks (nfse_local.stack.LocalStack, nfse_local.invoke.in_process_stack)
so every test and the demo run with the guarantee.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


@contextlib.contextmanager
def atomic_moto_writes() -> Iterator[None]:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are.

    moto checks a ConditionExpression and then writes, with no lock between the two: two
    threads (the moto server's, or in-process mock_aws callers) can both pass
    `attribute_not_exists(id)`. Real DynamoDB evaluates the condition and writes atomically
    per item, and the platform relies on that (idempotency records, status transitions), so
    concurrency tests must run with this guarantee or they test moto's race, not ours.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    saved = {name: getattr(DynamoDBBackend, name) for name in _WRITES}

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        return write

    for name, original in saved.items():
        setattr(DynamoDBBackend, name, locked(original))
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(DynamoDBBackend, name, original)
