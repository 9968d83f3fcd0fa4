"""The ``change_order`` last applied per item, kept in DynamoDB for sinks that cannot guard
themselves (a CRM's REST API has no conditional write).

Use around a side effect that sets an item's state::

    guard = AppliedOrders("crm-sync")
    if not guard.is_newer(uid, record.change_order):   # consistent read
        return                                          # older or a duplicate: skip
    write_to_the_sink(...)
    guard.record(uid, record.change_order)              # conditional: only ever moves forward

``record`` runs only AFTER the write succeeded, so a failed write leaves the guard where it
was and a retry writes again. Its condition (``attribute_not_exists OR change_order < :o``)
keeps the stored order from moving backwards; it returns ``False`` when a newer change was
recorded while we wrote: two writers of one item raced between the read and the write, and
the sink may now hold the older state (see docs/consumers.md, "crm-sync: the remaining race").

Table (``IDEMPOTENCY_TABLE``, shared with ``streamkit.idempotency``): key ``id`` (S) =
``"<consumer>#order#<item>"``, attributes ``change_order`` and ``applied_at``; no expiry (one
small item per item of the users table, needed as long as that item can change).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from .idempotency import IDEMPOTENCY_TABLE
from .ordering import is_newer

# A consumer that guards its writes with ``AppliedOrders`` lists these in its SETTINGS.
SETTINGS = (IDEMPOTENCY_TABLE,)


class AppliedOrders:
    """One consumer's applied orders; thread-safe (the reprocess worker runs a thread pool)."""

    def __init__(self, consumer: str, table: str | None = None, client: Any = None):
        self.consumer = consumer
        self._table = table
        self._injected = client
        self._client: Any = None
        self._endpoint: str | None = None
        self._lock = threading.Lock()

    @property
    def table(self) -> str:
        return self._table or IDEMPOTENCY_TABLE.require(owner=f"{self.consumer} (its applied change_order per item)")

    def _dynamodb(self) -> Any:
        """The injected client, else one per process and AWS_ENDPOINT_URL, made on first use."""
        if self._injected is not None:
            return self._injected
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        client = self._client
        if client is not None and self._endpoint == endpoint:
            return client
        with self._lock:
            if self._client is None or self._endpoint != endpoint:
                from .awsclient import make_client

                self._client, self._endpoint = make_client("dynamodb"), endpoint
            return self._client

    def _key(self, item: str) -> dict:
        return {"id": {"S": f"{self.consumer}#order#{item}"}}

    def stored(self, item: str) -> str | None:
        """The order last recorded for ``item`` (consistent read), ``None`` if none."""
        resp = self._dynamodb().get_item(TableName=self.table, Key=self._key(item), ConsistentRead=True,
                                         ProjectionExpression="change_order")
        value = (resp.get("Item") or {}).get("change_order", {}).get("S")
        return value or None

    def is_newer(self, item: str, order: str) -> bool:
        """Would ``order`` move ``item`` forward? (False for older changes and duplicates.)"""
        return is_newer(order, self.stored(item))

    def record(self, item: str, order: str) -> bool:
        """Record ``order`` as applied; ``False`` when a newer (or equal) one is already there."""
        client = self._dynamodb()
        try:
            client.update_item(
                TableName=self.table,
                Key=self._key(item),
                UpdateExpression="SET change_order = :o, applied_at = :t",
                ConditionExpression="attribute_not_exists(change_order) OR change_order < :o",
                ExpressionAttributeValues={":o": {"S": order}, ":t": {"N": str(int(time.time()))}},
            )
        except Exception as exc:
            from .awsclient import error_code

            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def reset(self) -> None:
        """Forget the cached client (tests point AWS_ENDPOINT_URL elsewhere)."""
        with self._lock:
            self._client, self._endpoint = None, None
