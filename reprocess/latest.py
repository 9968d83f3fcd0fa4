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
import time

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


BATCH_GET_MAX = 100  # keys per BatchGetItem
BATCH_GET_ATTEMPTS = 5


def key_text(keys: dict) -> str:
    """One text per item key (Lambda JSON), to match items read in bulk to their records."""
    return json.dumps(keys, sort_keys=True, separators=(",", ":"))


def current_items(dynamodb, table: str, keys_list: list[dict], *, sleep=time.sleep) -> dict[str, dict | None]:
    """Consistent ``BatchGetItem`` for many keys at once (a rewind's batch in latest mode):
    ``{key_text(keys): item in Lambda's JSON shape, or None when gone}``. Unprocessed keys are
    asked again with backoff; raises when some are still unanswered (the caller reads those
    one by one)."""
    wanted = {key_text(k): k for k in keys_list}
    found: dict[str, dict | None] = dict.fromkeys(wanted)
    names = sorted({name for k in wanted.values() for name in k})
    pending = list(wanted.values())
    for attempt in range(BATCH_GET_ATTEMPTS):
        left: list[dict] = []
        for i in range(0, len(pending), BATCH_GET_MAX):
            chunk = pending[i : i + BATCH_GET_MAX]
            resp = dynamodb.batch_get_item(RequestItems={table: {
                "Keys": [lambda_image_to_client(k) for k in chunk], "ConsistentRead": True}})
            for item in (resp.get("Responses") or {}).get(table, []):
                image = client_image_to_lambda(item) or {}
                found[key_text({n: image[n] for n in names if n in image})] = image
            unprocessed = ((resp.get("UnprocessedKeys") or {}).get(table) or {}).get("Keys") or []
            left += [client_image_to_lambda(k) or {} for k in unprocessed]
        if not left:
            return found
        pending = left
        sleep(min(2.0, 0.05 * 2**attempt))
    raise RuntimeError(f"BatchGetItem left {len(pending)} key(s) unprocessed after {BATCH_GET_ATTEMPTS} attempts")


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

