"""The failure envelope (contract 4 of DESIGN.md): built by the stream path, read by reprocess.

One module owns the format so both sides agree on it: version, field names, claim-check
stub, message attributes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .excinfo import MAX_TRACEBACK_CHARS, describe_error  # noqa: F401  (the envelope's "error")
from .timefmt import now_iso

ENVELOPE_VERSION = 1


class EnvelopeError(ValueError):
    """A message body that is not a valid failure envelope; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def record_stub(record: Any) -> dict:
    """What stays in the envelope when the record itself went to S3: keys and metadata
    (``streamkit.sources.stub``: still a record of its source, without images)."""
    from .sources import stub

    return stub(record)


def build_envelope(
    *,
    consumer: str,
    record: Any,
    error: dict,
    attempts: int = 1,
    function_name: str | None = None,
    request_id: str | None = None,
    payload_ref: dict | None = None,
    captured_at: str | None = None,
) -> dict:
    return {
        "version": ENVELOPE_VERSION,
        "consumer": consumer,
        "record": record_stub(record) if payload_ref else record,
        "error": error,
        "attempts": attempts,
        "capturedAt": captured_at or now_iso(),
        "source": {"functionName": function_name, "awsRequestId": request_id},
        "payloadRef": payload_ref,
    }


def message_attributes(consumer: str, error_type: str) -> dict:
    """SQS message attributes: filter by consumer and error type without parsing bodies."""
    return {
        "consumer": {"DataType": "String", "StringValue": consumer},
        "errorType": {"DataType": "String", "StringValue": error_type or "Unknown"},
    }


def attributes_size(attributes: dict) -> int:
    """Bytes SQS counts for message attributes (name + type + value)."""
    return sum(
        len(name.encode()) + len(a["DataType"].encode()) + len(a.get("StringValue", "").encode())
        for name, a in attributes.items()
    )


def dumps(envelope: dict) -> str:
    return json.dumps(envelope, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Envelope:
    """A parsed, validated envelope."""

    body: dict

    @property
    def consumer(self) -> str:
        return self.body["consumer"]

    @property
    def record(self) -> dict:
        return self.body["record"]

    @property
    def attempts(self) -> int:
        return self.body["attempts"]

    @property
    def error(self) -> dict:
        return self.body["error"]

    @property
    def payload_ref(self) -> dict | None:
        return self.body.get("payloadRef")

    @property
    def captured_at(self) -> str | None:
        return self.body.get("capturedAt")


def parse_envelope(body: str | bytes) -> Envelope:
    """Validate a message body; raises ``EnvelopeError`` with a reason fit for a parking note."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("body is not a JSON object")
    version = data.get("version")
    if version != ENVELOPE_VERSION:
        raise EnvelopeError(f"unsupported envelope version {version!r} (this worker reads {ENVELOPE_VERSION})")
    if not isinstance(data.get("consumer"), str) or not data["consumer"]:
        raise EnvelopeError("envelope has no consumer")
    if not isinstance(data.get("record"), dict):
        raise EnvelopeError("envelope has no record object")
    ref = data.get("payloadRef")
    if ref is not None and not (isinstance(ref, dict) and ref.get("bucket") and ref.get("key")):
        raise EnvelopeError("payloadRef must be null or {bucket, key}")
    attempts = data.get("attempts", 1)
    if not isinstance(attempts, int) or attempts < 0:
        raise EnvelopeError(f"attempts must be a non-negative integer, got {attempts!r}")
    data.setdefault("attempts", attempts)
    if not isinstance(data.get("error"), dict):
        data["error"] = {"type": "Unknown", "message": "", "traceback": ""}
    return Envelope(data)
