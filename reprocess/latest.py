"""``latest`` mode: rebuild a captured record from the item's current state in the table.

Reprocessing an old MODIFY after newer changes succeeded must not roll state back, so
state-sync consumers (search-indexer, crm-sync) get a record made from a consistent read
of the item now:

- item exists  -> ``MODIFY`` with ``NewImage`` = the current item and no ``OldImage``
  (the state before "now" is unknown; pretending otherwise would mislead a diffing consumer);
- item is gone -> ``REMOVE`` with ``OldImage`` = the last image the captured record knew
  (its ``NewImage``, else its ``OldImage``), as Lambda's REMOVE records carry the old item.

Kept from the captured record, unchanged: ``eventID`` (so the idempotency guard keyed on
(consumer, eventID) still recognises a change already applied), ``dynamodb.SequenceNumber``
(logs and ordering still point at the stream position that failed), ``Keys``,
``ApproximateCreationDateTime`` (so the record keeps its ``change_order``: the current state
is written under the failed change's order, and any newer change still beats it),
``StreamViewType``, ``eventSource``, ``eventSourceARN``, ``awsRegion``, ``eventVersion``.
``SizeBytes`` is recomputed approximately.

A Kinesis record (``streamkit.sources``) is rebuilt the same way inside its ``kinesis.data``;
its Kinesis sequence number, partition key and arrival time stay as captured.
"""
from __future__ import annotations

import copy
import json

from streamkit import sources
from streamkit.ddbjson import client_image_to_lambda, lambda_image_to_client


def record_keys(record: dict) -> dict:
    keys = sources.keys_of(record)
    if not keys:
        raise ValueError("record has no dynamodb.Keys; latest mode cannot find the item")
    return keys


def current_item(dynamodb, table: str, keys: dict) -> dict | None:
    """Consistent ``GetItem`` by the record's keys; the item in Lambda's JSON shape or ``None``."""
    resp = dynamodb.get_item(
        TableName=table, Key=lambda_image_to_client(keys), ConsistentRead=True
    )
    item = resp.get("Item")
    return client_image_to_lambda(item) if item else None


def latest_record(record: dict, item: dict | None) -> dict:
    """The captured ``record`` rebuilt around ``item`` (the current state, or ``None`` if gone)."""
    change = sources.change_of(record)
    if change is None:
        raise ValueError("not a DynamoDB Streams or Kinesis record; latest mode cannot rebuild it")
    out = copy.deepcopy(change)
    ddb = out.setdefault("dynamodb", {})
    last_known = ddb.get("NewImage") or ddb.get("OldImage")
    ddb.pop("NewImage", None)
    ddb.pop("OldImage", None)
    if item is not None:
        out["eventName"] = "MODIFY"
        ddb["NewImage"] = item
    else:
        out["eventName"] = "REMOVE"
        if last_known:
            ddb["OldImage"] = last_known
    ddb["SizeBytes"] = len(json.dumps({k: ddb.get(k) for k in ("Keys", "NewImage", "OldImage") if k in ddb}))
    return sources.with_change(record, out)


def build_latest(dynamodb, table: str, record: dict) -> dict:
    return latest_record(record, current_item(dynamodb, table, record_keys(record)))

