"""Lambda's on-failure destination record for a stream event source: the one owner of its
format (built by the local emulator, parsed by the reprocess worker, summarized by the API).

When a stream mapping discards a batch (retries exhausted, records too old), Lambda sends
an invocation record to the on-failure destination. For SQS and SNS it holds metadata only:

    {"requestContext": {"requestId", "functionArn", "condition", "approximateInvokeCount"},
     "responseContext": {"statusCode", "executedVersion", "functionError"?},
     "version": "1.0", "timestamp": "2026-11-22T10:00:00.000Z",
     "DDBStreamBatchInfo": {"shardId", "startSequenceNumber", "endSequenceNumber",
                            "approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord",
                            "batchSize", "streamArn"}}

The same record for a Kinesis mapping (Kinesis Data Streams for DynamoDB) carries
``KinesisBatchInfo`` with the same fields (the Kinesis shard, sequence numbers and stream
ARN); callers read ``message.batch.source`` (``dynamodb`` or ``kinesis``).

Variants slot in without touching callers:
- another kind of batch info is one more entry in ``BATCH_INFO_KEYS``;
- an S3 destination writes the whole invocation too (``payload``: the event Lambda sent,
  a JSON string or object); ``message.records`` then holds the records, else ``None``.

An S3 destination's objects reach the failure queue as S3 event notifications (the bucket
notifies the queue on object creation); ``object_refs`` reads such a notification (S3's
``{"Records": [{"eventSource": "aws:s3", "s3": {"bucket", "object"}}]}``, and the
``s3:TestEvent`` S3 sends when the notification is set up), ``parse_object`` the object.

Imports nothing heavy: the local runtime, the worker and the operator API all load it.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from .timefmt import iso_from_epoch

VERSION = "1.0"
# source -> the key its batch metadata travels under
BATCH_INFO_KEYS: dict[str, str] = {"dynamodb": "DDBStreamBatchInfo", "kinesis": "KinesisBatchInfo"}
_SOURCE_OF_KEY = {key: source for source, key in BATCH_INFO_KEYS.items()}
_REQUIRED = ("shardId", "startSequenceNumber", "endSequenceNumber", "streamArn")


class OnFailureMessageError(ValueError):
    """Looks like an on-failure record but cannot be used; ``reason`` says why (a park note)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class BatchInfo:
    """Which records of which shard the discarded batch held (inclusive sequence range)."""

    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    stream_arn: str
    batch_size: int | None = None
    first_arrival: str | None = None  # ISO-8601, whole seconds, as Lambda writes it
    last_arrival: str | None = None
    source: str = "dynamodb"

    @property
    def key(self) -> str:
        return BATCH_INFO_KEYS[self.source]

    def to_dict(self) -> dict:
        return {
            "shardId": self.shard_id,
            "startSequenceNumber": self.start_sequence_number,
            "endSequenceNumber": self.end_sequence_number,
            "approximateArrivalOfFirstRecord": self.first_arrival,
            "approximateArrivalOfLastRecord": self.last_arrival,
            "batchSize": self.batch_size,
            "streamArn": self.stream_arn,
        }

    def describe(self) -> str:
        size = "?" if self.batch_size is None else self.batch_size
        return f"{size} records of {self.shard_id} {self.start_sequence_number}..{self.end_sequence_number}"


@dataclass(frozen=True)
class OnFailureMessage:
    """One parsed on-failure record."""

    batch: BatchInfo
    function_arn: str | None = None
    condition: str | None = None  # RetryAttemptsExhausted | RecordAgeExceeded | ...
    invoke_count: int | None = None
    request_id: str | None = None
    timestamp: str | None = None
    function_error: str | None = None
    status_code: int | None = None
    executed_version: str | None = "$LATEST"
    records: list[dict] | None = None  # the invocation's records, when the destination kept them (S3)

    @property
    def function_name(self) -> str | None:
        """The function's name from its ARN (``arn:aws:lambda:region:account:function:NAME[:qualifier]``)."""
        if not self.function_arn:
            return None
        parts = self.function_arn.split(":")
        return parts[6] if len(parts) > 6 else self.function_arn

    def to_dict(self) -> dict:
        response: dict[str, Any] = {"statusCode": self.status_code if self.status_code is not None else 200,
                                    "executedVersion": self.executed_version}
        if self.function_error:
            response["functionError"] = self.function_error
        out: dict[str, Any] = {
            "requestContext": {
                "requestId": self.request_id or str(uuid.uuid4()),
                "functionArn": self.function_arn,
                "condition": self.condition,
                "approximateInvokeCount": self.invoke_count,
            },
            "responseContext": response,
            "version": VERSION,
            "timestamp": self.timestamp,
            self.batch.key: self.batch.to_dict(),
        }
        if self.records is not None:
            out["payload"] = json.dumps({"Records": self.records}, separators=(",", ":"))
        return out


S3_KEY_PREFIX = "aws/lambda/"


def is_s3_destination(arn: str) -> bool:
    """An S3 bucket ARN (``arn:aws:s3:::name``): the destination that keeps the records."""
    return arn.split(":")[2:3] == ["s3"]


def s3_object_key(mapping_uuid: str, shard_id: str, at_epoch_s: float, unique: str | None = None) -> str:
    """Where Lambda writes a failed invocation in an S3 on-failure destination:
    ``aws/lambda/<mapping UUID>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>``."""
    at = datetime.fromtimestamp(int(at_epoch_s), UTC)
    return (f"{S3_KEY_PREFIX}{mapping_uuid}/{shard_id}/{at:%Y/%m/%d}/"
            f"{at:%Y-%m-%dT%H.%M.%S}-{unique or uuid.uuid4()}")


S3_TEST_EVENT = "s3:TestEvent"


@dataclass(frozen=True)
class ObjectRef:
    """One object an S3 event notification names (the bucket is versioned: the version read
    is the one written, whatever happened to the key since)."""

    bucket: str
    key: str
    version_id: str | None = None
    size: int | None = None
    event_time: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def shard_id(self) -> str | None:
        """The shard in Lambda's key layout (``s3_object_key``), else ``None``: on-failure
        objects of one shard run one after the other, like its metadata messages."""
        if not self.key.startswith(S3_KEY_PREFIX):
            return None
        parts = self.key[len(S3_KEY_PREFIX):].split("/")
        return parts[1] if len(parts) > 2 and parts[1] else None


def is_test_event(body: Any) -> bool:
    """S3's ``s3:TestEvent`` (sent when a bucket's notification is set up; names no object)."""
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return isinstance(body, dict) and body.get("Event") == S3_TEST_EVENT


def is_object_notification(body: Any) -> bool:
    """True for a decoded JSON body that is an S3 event notification (or S3's test event)."""
    if not isinstance(body, dict):
        return False
    if is_test_event(body):
        return True
    records = body.get("Records")
    return (isinstance(records, list) and bool(records)
            and all(isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records))


def object_refs(body: Any) -> list[ObjectRef]:
    """The on-failure objects an S3 event notification names (``[]`` for S3's test event).

    Raises ``OnFailureMessageError`` for a notification that names no created object (another
    event, no bucket or key): the queue gets only object-created notifications of the bucket."""
    if not is_object_notification(body):
        raise OnFailureMessageError("not an S3 event notification")
    if is_test_event(body):
        return []
    refs = []
    for rec in body["Records"]:
        event = str(rec.get("eventName") or "")
        if not event.startswith("ObjectCreated:"):
            raise OnFailureMessageError(f"S3 event {event or '(none)'} is not an object creation")
        s3 = _object(rec.get("s3"))
        bucket, obj = _object(s3.get("bucket")).get("name"), _object(s3.get("object"))
        if not isinstance(bucket, str) or not bucket or not isinstance(obj.get("key"), str) or not obj["key"]:
            raise OnFailureMessageError("S3 event names no bucket and key")
        version = obj.get("versionId")
        refs.append(ObjectRef(
            bucket=bucket,
            key=unquote_plus(obj["key"]),  # S3 sends keys URL-encoded, spaces as '+'
            version_id=version if isinstance(version, str) and version else None,
            size=_int_or_none(obj.get("size")),
            event_time=rec.get("eventTime") if isinstance(rec.get("eventTime"), str) else None,
        ))
    return refs


def parse_object(data: bytes | str, ref: ObjectRef | None = None) -> OnFailureMessage:
    """An on-failure object's content (what Lambda wrote to an S3 destination): the same
    record as ``parse``, usually with its ``records``; the error names the object."""
    try:
        return parse(data)
    except OnFailureMessageError as exc:
        where = f"{ref.url} " if ref is not None else ""
        raise OnFailureMessageError(f"on-failure object {where}is unusable: {exc.reason}") from None


def arrival_iso(epoch_s: float) -> str:
    """A record's approximate arrival as Lambda writes it in batch info: whole seconds, ``Z``."""
    return datetime.fromtimestamp(int(epoch_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(
    batch: BatchInfo,
    *,
    function_arn: str,
    condition: str,
    invoke_count: int,
    function_error: str | None = None,
    at_epoch_s: float,
    records: list[dict] | None = None,
) -> dict:
    """The record Lambda sends when it discards ``batch`` (``records``: an S3 destination's copy)."""
    return OnFailureMessage(
        batch=batch,
        function_arn=function_arn,
        condition=condition,
        invoke_count=invoke_count,
        timestamp=iso_from_epoch(at_epoch_s),
        function_error=function_error,
        records=records,
    ).to_dict()


def batch_info_key(body: Any) -> str | None:
    """The batch-info key of an on-failure record (``DDBStreamBatchInfo``...), else ``None``."""
    if isinstance(body, dict):
        for key in _SOURCE_OF_KEY:
            if key in body:
                return key
    return None


def is_on_failure(body: Any) -> bool:
    """True for a decoded JSON body that is an on-failure record (of any known source)."""
    return batch_info_key(body) is not None


def parse(body: Any) -> OnFailureMessage:
    """Validate an on-failure record (a decoded dict, or its JSON text)."""
    if isinstance(body, (str, bytes)):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise OnFailureMessageError(f"not JSON: {exc}") from None
    key = batch_info_key(body)
    if key is None:
        raise OnFailureMessageError(f"no batch info ({', '.join(_SOURCE_OF_KEY)})")
    info = body[key]
    if not isinstance(info, dict):
        raise OnFailureMessageError(f"{key} is not an object")
    missing = [k for k in _REQUIRED if not info.get(k)]
    if missing:
        raise OnFailureMessageError(f"{key} lacks {', '.join(missing)}")
    for k in ("startSequenceNumber", "endSequenceNumber"):
        if not str(info[k]).isdigit():
            raise OnFailureMessageError(f"{key}.{k} is not a sequence number: {info[k]!r}")
    ctx = _object(body.get("requestContext"))
    resp = _object(body.get("responseContext"))
    return OnFailureMessage(
        batch=BatchInfo(
            shard_id=info["shardId"],
            start_sequence_number=str(info["startSequenceNumber"]),
            end_sequence_number=str(info["endSequenceNumber"]),
            stream_arn=info["streamArn"],
            batch_size=_int_or_none(info.get("batchSize")),
            first_arrival=info.get("approximateArrivalOfFirstRecord"),
            last_arrival=info.get("approximateArrivalOfLastRecord"),
            source=_SOURCE_OF_KEY[key],
        ),
        function_arn=ctx.get("functionArn"),
        condition=ctx.get("condition"),
        invoke_count=_int_or_none(ctx.get("approximateInvokeCount")),
        request_id=ctx.get("requestId"),
        timestamp=body.get("timestamp"),
        function_error=resp.get("functionError"),
        status_code=_int_or_none(resp.get("statusCode")),
        executed_version=resp.get("executedVersion"),
        records=_payload_records(body.get("payload"), key),
    )


def summarize(body: Any) -> dict:
    """What an operator sees of one on-failure record (the API's failure sample row)."""
    try:
        msg = parse(body)
    except OnFailureMessageError as exc:
        raw = _object(body)
        ctx = _object(raw.get("requestContext"))
        return {"kind": "on-failure", "errorType": ctx.get("condition") or "OnFailure",
                "errorMessage": f"unusable on-failure record: {exc.reason}", "keys": None, "sequenceNumber": None,
                "capturedAt": raw.get("timestamp"),
                "attempts": ctx.get("approximateInvokeCount")}
    return {
        "kind": "on-failure",
        "errorType": msg.condition or "OnFailure",
        "errorMessage": msg.batch.describe(),
        "keys": None,
        "sequenceNumber": msg.batch.start_sequence_number,
        "capturedAt": msg.timestamp,
        "attempts": msg.invoke_count,
        "functionName": msg.function_name,
        "source": msg.batch.source,
    }


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _payload_records(payload: Any, key: str) -> list[dict] | None:
    """The records of an S3 destination's ``payload`` (the invocation event), else ``None``."""
    if payload is None:
        return None
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise OnFailureMessageError(f"payload is not JSON: {exc}") from None
    records = payload.get("Records") if isinstance(payload, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise OnFailureMessageError("payload has no Records list")
    return records
