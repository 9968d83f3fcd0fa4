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
``ApproximateCreationDateTime``, ``StreamViewType``, ``eventSource``, ``eventSourceARN``,
``awsRegion``, ``eventVersion``. ``SizeBytes`` is recomputed approximately.
"""
from __future__ import annotations

import base64
import copy
import json
from .stream_reader import to_lambda_image


def _to_client_av(av: dict) -> dict:
    """Lambda JSON (binary as base64 text) -> boto3 low-level (binary as bytes)."""
    ((tag, v),) = av.items()
    if tag == "B":
        return {"B": base64.b64decode(v) if isinstance(v, str) else v}
    if tag == "BS":
        return {"BS": [base64.b64decode(x) if isinstance(x, str) else x for x in v]}
    if tag == "M":
        return {"M": {k: _to_client_av(x) for k, x in v.items()}}
    if tag == "L":
        return {"L": [_to_client_av(x) for x in v]}
    return {tag: v}


def record_keys(record: dict) -> dict:
    keys = (record.get("dynamodb") or {}).get("Keys")
    if not isinstance(keys, dict) or not keys:
        raise ValueError("record has no dynamodb.Keys; latest mode cannot find the item")
    return keys


def current_item(dynamodb, table: str, keys: dict) -> dict | None:
    """Consistent ``GetItem`` by the record's keys; the item in Lambda's JSON shape or ``None``."""
    resp = dynamodb.get_item(
        TableName=table, Key={k: _to_client_av(v) for k, v in keys.items()}, ConsistentRead=True
    )
    item = resp.get("Item")
    return to_lambda_image(item) if item else None


def latest_record(record: dict, item: dict | None) -> dict:
    """The captured ``record`` rebuilt around ``item`` (the current state, or ``None`` if gone)."""
    out = copy.deepcopy(record)
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
    return out


def build_latest(dynamodb, table: str, record: dict) -> dict:
    return latest_record(record, current_item(dynamodb, table, record_keys(record)))

