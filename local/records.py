"""Convert DynamoDB Streams ``GetRecords`` records (as boto3 returns them) to Lambda's format.

moto (and boto3) differ from what Lambda delivers: no ``eventSourceARN``, ``eventVersion``
"1.0", ``ApproximateCreationDateTime`` as a datetime with milliseconds, binary values as
bytes. Lambda sends whole epoch seconds, eventVersion "1.1", binary as base64 text.
"""
from __future__ import annotations

import base64
from datetime import datetime
from typing import Any


def _av(value: dict) -> dict:
    """One attribute value in low-level form -> JSON-safe (binary as base64 text)."""
    ((tag, v),) = value.items()
    if tag == "B":
        return {"B": _b64(v)}
    if tag == "BS":
        return {"BS": [_b64(x) for x in v]}
    if tag == "M":
        return {"M": {k: _av(x) for k, x in v.items()}}
    if tag == "L":
        return {"L": [_av(x) for x in v]}
    return {tag: v}


def _b64(v: Any) -> str:
    if isinstance(v, str):  # already text
        return v
    return base64.b64encode(bytes(v)).decode()


def _image(image: dict | None) -> dict | None:
    return None if image is None else {k: _av(v) for k, v in image.items()}


def epoch_seconds(value: Any) -> int:
    """ApproximateCreationDateTime (datetime or number) -> whole epoch seconds, as Lambda sends."""
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(float(value))


def to_lambda_record(record: dict, stream_arn: str) -> dict:
    """A boto3 ``GetRecords`` record -> the record dict Lambda puts in ``event["Records"]``."""
    src = record.get("dynamodb") or {}
    ddb: dict[str, Any] = {}
    if "ApproximateCreationDateTime" in src:
        ddb["ApproximateCreationDateTime"] = epoch_seconds(src["ApproximateCreationDateTime"])
    for name in ("Keys", "NewImage", "OldImage"):
        if src.get(name) is not None:
            ddb[name] = _image(src[name])
    ddb["SequenceNumber"] = src["SequenceNumber"]
    if "SizeBytes" in src:
        ddb["SizeBytes"] = int(src["SizeBytes"])
    if "StreamViewType" in src:
        ddb["StreamViewType"] = src["StreamViewType"]
    out: dict[str, Any] = {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": stream_arn.split(":")[3] if stream_arn.count(":") >= 3 else record.get("awsRegion"),
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }
    if record.get("userIdentity"):
        out["userIdentity"] = {
            "type": record["userIdentity"].get("Type", record["userIdentity"].get("type")),
            "principalId": record["userIdentity"].get("PrincipalId", record["userIdentity"].get("principalId")),
        }
    return out
