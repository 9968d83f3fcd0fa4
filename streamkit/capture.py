"""Write failed records to the consumer's failure queue, claim-checking oversized ones in S3.

The SQS and S3 clients are created on the first capture, never at cold start.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .envelope import build_envelope, describe_error, dumps, message_attributes
from .sqsbatch import DEFAULT_MAX_BATCH_BYTES, message_size, send_batch


@dataclass
class PendingCapture:
    """One failed record waiting to be captured."""

    index: int
    record: Any
    error: BaseException
    sequence_number: str | None = None
    reason: str | None = field(default=None)  # why capture failed, when it did


def _client(service: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5),
    )


class FailureCapture:
    """Captures failures for one consumer (``FAILURE_QUEUE_URL``, optional ``FAILURE_BUCKET``)."""

    def __init__(
        self,
        consumer: str,
        queue_url: str,
        bucket: str | None = None,
        *,
        max_message_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        function_name: str | None = None,
    ):
        self.consumer = consumer
        self.queue_url = queue_url
        self.bucket = bucket
        self.max_message_bytes = max_message_bytes
        self.function_name = function_name
        self._sqs = None
        self._s3 = None

    @property
    def sqs(self):
        if self._sqs is None:
            self._sqs = _client("sqs")
        return self._sqs

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = _client("s3")
        return self._s3

    def _claim_check(self, item: PendingCapture) -> dict:
        """Put the whole record in S3; returns the ``payloadRef``."""
        now = datetime.now(timezone.utc)
        ident = item.sequence_number or (item.record.get("eventID") if isinstance(item.record, dict) else None)
        key = f"claim-checks/{self.consumer}/{now:%Y/%m/%d}/{ident or 'unidentified'}-{uuid.uuid4().hex[:12]}.json"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(item.record, separators=(",", ":"), default=str).encode(),
            ContentType="application/json",
        )
        return {"bucket": self.bucket, "key": key}

    def _message(self, item: PendingCapture, request_id: str | None) -> dict | None:
        """The SQS entry for ``item``; ``None`` (with ``item.reason`` set) when it cannot be built."""
        error = describe_error(item.error)
        attrs = message_attributes(self.consumer, error["type"])
        common = dict(consumer=self.consumer, error=error, function_name=self.function_name, request_id=request_id)
        entry = {
            "Id": str(item.index),
            "MessageBody": dumps(build_envelope(record=item.record, **common)),
            "MessageAttributes": attrs,
        }
        size = message_size(entry)
        if size <= self.max_message_bytes:
            return entry
        if not self.bucket:
            item.reason = (
                f"envelope of {size} bytes exceeds the {self.max_message_bytes}-byte queue limit "
                "and no FAILURE_BUCKET is set for a claim check"
            )
            return None
        try:
            ref = self._claim_check(item)
        except Exception as exc:
            item.reason = f"claim check to s3://{self.bucket} failed: {type(exc).__name__}: {exc}"
            return None
        entry["MessageBody"] = dumps(build_envelope(record=item.record, payload_ref=ref, **common))
        if message_size(entry) > self.max_message_bytes:  # keys alone too large: nothing fits
            item.reason = f"even the claim-check stub exceeds {self.max_message_bytes} bytes"
            return None
        return entry

    def capture(self, items: list[PendingCapture], request_id: str | None = None) -> list[PendingCapture]:
        """Capture ``items``; returns those that could not be captured (``reason`` set)."""
        failed: list[PendingCapture] = []
        entries: list[dict] = []
        by_id: dict[str, PendingCapture] = {}
        for item in items:
            entry = self._message(item, request_id)
            if entry is None:
                failed.append(item)
            else:
                entries.append(entry)
                by_id[entry["Id"]] = item

        def note(message: dict, reason: str) -> None:
            by_id[message["Id"]].reason = reason

        if entries:
            for message in send_batch(
                self.sqs, self.queue_url, entries, max_batch_bytes=self.max_message_bytes, on_error=note
            ):
                failed.append(by_id[message["Id"]])
        return failed
