"""The two record formats a stream function receives, and the one owner of the Kinesis one.

* **DynamoDB Streams** (``eventSource: aws:dynamodb``): the change is the record itself
  (``eventName``, ``dynamodb.Keys/NewImage/OldImage/SequenceNumber/...``).
* **Kinesis Data Streams for DynamoDB** (``eventSource: aws:kinesis``): Lambda's Kinesis
  record, whose base64 ``kinesis.data`` holds the DynamoDB change record::

      {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey", "sequenceNumber",
                   "data": base64(JSON change), "approximateArrivalTimestamp": epoch s},
       "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": "<shardId>:<seq>",
       "eventName": "aws:kinesis:record", "invokeIdentityArn", "awsRegion", "eventSourceARN"}

      change = {"awsRegion", "eventID", "eventName": INSERT|MODIFY|REMOVE, "userIdentity",
                "recordFormat": "application/json", "tableName", "eventSource": "aws:dynamodb",
                "dynamodb": {"ApproximateCreationDateTime": epoch ms or us, "Keys",
                             "NewImage"?, "OldImage"?, "SizeBytes"}}

  (no ``SequenceNumber`` and no ``StreamViewType`` in the change; the Kinesis sequence
  number is what ``batchItemFailures`` names).

Everything outside ``streamkit.record`` that looks inside a raw record (the loop's failure
logs, claim-check stubs, the reprocess worker's grouping and latest mode, the operator API,
the local bridge and emulator, the test builders) goes through these functions. They never
raise on odd input: they answer ``None`` and let ``StreamRecord`` say what is wrong.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

DYNAMODB = "dynamodb"
KINESIS = "kinesis"
SOURCES = (DYNAMODB, KINESIS)
KINESIS_SCHEMA_VERSION = "1.0"
KINESIS_EVENT_NAME = "aws:kinesis:record"
RECORD_FORMAT = "application/json"


def source_of(raw: Any) -> str | None:
    """``"dynamodb"``, ``"kinesis"`` or ``None`` (not a stream record we know)."""
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("dynamodb"), dict):
        return DYNAMODB
    if isinstance(raw.get("kinesis"), dict):
        return KINESIS
    return None


def sequence_number_of(raw: Any) -> str | None:
    """What ``batchItemFailures`` names this record by (no decoding: cheap)."""
    src = source_of(raw)
    if src == DYNAMODB:
        seq = raw["dynamodb"].get("SequenceNumber")
    elif src == KINESIS:
        seq = raw["kinesis"].get("sequenceNumber")
    else:
        return None
    return seq if isinstance(seq, str) and seq else None


# json's C scanner, called directly: json.loads(bytes) adds its encoding detection, two regex
# whitespace matches and three Python frames to every record (about 10% of a 2.5 KB change's
# decode, issue 16's Kinesis rows). Anything it does not take whole goes through json.loads.
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, untyped


def decode_data(data: Any) -> dict:
    """base64 ``kinesis.data`` -> the change record dict; ``ValueError`` saying why not."""
    if not isinstance(data, str):
        raise ValueError(f"kinesis.data must be base64 text, got {type(data).__name__}")
    try:  # a2b_base64 strict: half the cost of b64decode(validate=True), as strict (on every record)
        raw = binascii.a2b_base64(data, strict_mode=True)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError(f"kinesis.data is not base64 JSON: {exc}") from None
    change: Any = None
    try:  # the common case: UTF-8 JSON text, one value and nothing after it
        text = raw.decode()
        change, end = _scan_json(text, 0)
        if end != len(text):
            change = None
    except (ValueError, StopIteration):  # UnicodeDecodeError is a ValueError
        change = None
    if change is None:  # anything else as json.loads takes it (whitespace, other encodings), or its error
        try:
            change = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"kinesis.data is not base64 JSON: {exc}") from None
    if not isinstance(change, dict):
        raise ValueError(f"kinesis.data holds {type(change).__name__}, not a DynamoDB change record")
    return change


def encode_data(change: dict) -> str:
    """A change record -> the base64 text Lambda puts in ``kinesis.data``."""
    return base64.b64encode(json.dumps(change, separators=(",", ":")).encode()).decode()


def change_of(raw: Any) -> dict | None:
    """The DynamoDB change record (``eventName``, ``dynamodb``...) of either format, or ``None``.
    On Kinesis this decodes ``kinesis.data`` (for failure paths, not the hot loop)."""
    src = source_of(raw)
    if src == DYNAMODB:
        return raw
    if src == KINESIS:
        try:
            return decode_data(raw["kinesis"].get("data"))
        except ValueError:
            return None
    return None


def keys_of(raw: Any) -> dict | None:
    """The record's ``Keys`` in DynamoDB JSON, or ``None``."""
    change = change_of(raw)
    ddb = change.get("dynamodb") if isinstance(change, dict) else None
    keys = ddb.get("Keys") if isinstance(ddb, dict) else None
    return keys if isinstance(keys, dict) else None


def event_name_of(raw: Any) -> str | None:
    """``INSERT``/``MODIFY``/``REMOVE`` (the change's, also on Kinesis), or ``None``."""
    change = change_of(raw)
    name = change.get("eventName") if isinstance(change, dict) else None
    return name if isinstance(name, str) else None


def event_id_of(raw: Any) -> str | None:
    """The change's ``eventID`` (on Kinesis the DynamoDB one inside ``data``: equal for
    duplicates of one change, unlike Lambda's ``<shard>:<seq>``)."""
    change = change_of(raw)
    ident = change.get("eventID") if isinstance(change, dict) else None
    return ident if isinstance(ident, str) else None


def with_change(raw: dict, change: dict) -> dict:
    """A copy of ``raw`` carrying ``change`` instead of its own (latest mode rebuilds the
    change and keeps everything else: sequence number, arrival, ARNs)."""
    src = source_of(raw)
    if src == DYNAMODB:
        return change
    if src == KINESIS:
        return {**raw, "kinesis": {**raw["kinesis"], "data": encode_data(change)}}
    raise ValueError("not a DynamoDB Streams or Kinesis record")


_STUB_FIELDS = ("eventID", "eventName", "eventSource", "eventSourceARN", "awsRegion", "eventVersion")
_STUB_DDB = ("Keys", "SequenceNumber", "SizeBytes", "ApproximateCreationDateTime", "StreamViewType")


def stub(raw: Any) -> dict:
    """What stays of a record when its whole self went to S3 (a claim check): identity, keys
    and times, still a record of its format (images left out, so it is small)."""
    if not isinstance(raw, dict):
        return {}
    src = source_of(raw)
    out = {k: raw[k] for k in _STUB_FIELDS if k in raw}
    if src is None:
        return out
    if src == DYNAMODB:
        ddb = raw["dynamodb"]
        out["dynamodb"] = {k: ddb[k] for k in _STUB_DDB if k in ddb}
        return out
    kin = raw["kinesis"]
    out["kinesis"] = {k: v for k, v in kin.items() if k != "data"}
    change = change_of(raw)
    if change is not None:
        inner: dict = change["dynamodb"] if isinstance(change.get("dynamodb"), dict) else {}
        slim = {k: v for k, v in change.items() if k != "dynamodb"}
        slim["dynamodb"] = {k: inner[k] for k in _STUB_DDB if k in inner}
        out["kinesis"]["data"] = encode_data(slim)
    return out


def partition_key(keys: dict) -> str:
    """The partition key Kinesis Data Streams for DynamoDB gives an item's changes (a hash of
    its key: one item's changes land in one shard)."""
    return hashlib.md5(json.dumps(keys, sort_keys=True).encode()).hexdigest().upper()


def change_record(
    event_name: str,
    *,
    keys: dict,
    new_image: dict | None = None,
    old_image: dict | None = None,
    created_us: int,
    event_id: str,
    table_name: str,
    region: str = "us-east-1",
    size_bytes: int | None = None,
    user_identity: dict | None = None,
) -> dict:
    """The DynamoDB change record as Kinesis Data Streams for DynamoDB writes it (images in
    DynamoDB JSON, ``ApproximateCreationDateTime`` in microseconds: MICROSECOND precision)."""
    ddb: dict[str, Any] = {"ApproximateCreationDateTime": created_us, "Keys": keys}
    if new_image is not None:
        ddb["NewImage"] = new_image
    if old_image is not None:
        ddb["OldImage"] = old_image
    ddb["SizeBytes"] = size_bytes if size_bytes is not None else len(json.dumps(ddb, separators=(",", ":")))
    return {
        "awsRegion": region,
        "eventID": event_id,
        "eventName": event_name,
        "userIdentity": user_identity,
        "recordFormat": RECORD_FORMAT,
        "tableName": table_name,
        "dynamodb": ddb,
        "eventSource": "aws:dynamodb",
    }


def kinesis_record(
    change: dict | None = None,
    *,
    data: str | None = None,
    sequence_number: str,
    shard_id: str,
    stream_arn: str,
    partition_key: str,
    arrival_s: float,
    invoke_identity_arn: str | None = None,
) -> dict:
    """A Kinesis record exactly as Lambda delivers it, around ``change`` (or its ``data`` text
    as read from the stream)."""
    if data is None:
        if change is None:
            raise ValueError("kinesis_record needs the change or its data")
        data = encode_data(change)
    region = stream_arn.split(":")[3] if stream_arn.count(":") >= 5 else "us-east-1"
    account = stream_arn.split(":")[4] if stream_arn.count(":") >= 5 else "123456789012"
    return {
        "kinesis": {
            "kinesisSchemaVersion": KINESIS_SCHEMA_VERSION,
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": data,
            "approximateArrivalTimestamp": round(float(arrival_s), 3),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": KINESIS_EVENT_NAME,
        "invokeIdentityArn": invoke_identity_arn or f"arn:aws:iam::{account}:role/lambda-role",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def filter_view(raw: dict) -> dict:
    """What Lambda's event filtering matches on: a DynamoDB record as it is; a Kinesis record's
    ``kinesis`` metadata with ``data`` decoded (patterns say ``{"data": {"eventName": [...]}}``)."""
    if source_of(raw) != KINESIS:
        return raw
    view = dict(raw["kinesis"])
    change = change_of(raw)
    if change is not None:
        view["data"] = change
    return view
