"""Write failed records to the consumer's failure queue, claim-checking oversized ones in S3.

The SQS and S3 clients are created on the first capture, never at cold start.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .awsclient import make_client
from .batch import Failure
from .envelope import build_envelope, describe_error, dumps, message_attributes
from .sqsbatch import DEFAULT_MAX_BATCH_BYTES, message_size, send_batch


class _NotCaptured(Exception):
    """Why one failure could not be captured (kept as its settlement's ``problem``)."""


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
            self._sqs = make_client("sqs")
        return self._sqs

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = make_client("s3")
        return self._s3

    def _claim_check(self, failure: Failure) -> dict:
        """Put the whole record in S3; returns the ``payloadRef``."""
        now = datetime.now(UTC)
        raw = failure.raw
        ident = failure.sequence_number or (raw.get("eventID") if isinstance(raw, dict) else None)
        key = f"claim-checks/{self.consumer}/{now:%Y/%m/%d}/{ident or 'unidentified'}-{uuid.uuid4().hex[:12]}.json"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(raw, separators=(",", ":"), default=str).encode(),
            ContentType="application/json",
        )
        return {"bucket": self.bucket, "key": key}

    def _message(self, failure: Failure, request_id: str | None) -> dict:
        """The SQS entry for ``failure``; raises ``_NotCaptured`` when none can be built."""
        error = describe_error(failure.error)
        attrs = message_attributes(self.consumer, error["type"])
        common: dict[str, Any] = dict(consumer=self.consumer, error=error, function_name=self.function_name,
                                      request_id=request_id)
        entry = {
            "Id": str(failure.index),
            "MessageBody": dumps(build_envelope(record=failure.raw, **common)),
            "MessageAttributes": attrs,
        }
        size = message_size(entry)
        if size <= self.max_message_bytes:
            return entry
        if not self.bucket:
            raise _NotCaptured(
                f"envelope of {size} bytes exceeds the {self.max_message_bytes}-byte queue limit "
                "and no FAILURE_BUCKET is set for a claim check"
            )
        try:
            ref = self._claim_check(failure)
        except Exception as exc:
            raise _NotCaptured(f"claim check to s3://{self.bucket} failed: {type(exc).__name__}: {exc}") from None
        entry["MessageBody"] = dumps(build_envelope(record=failure.raw, payload_ref=ref, **common))
        if message_size(entry) > self.max_message_bytes:  # keys alone too large: nothing fits
            raise _NotCaptured(f"even the claim-check stub exceeds {self.max_message_bytes} bytes")
        return entry

    def capture(self, failures: Sequence[Failure], request_id: str | None = None) -> dict[int, str]:
        """Capture ``failures``; returns ``{index: why}`` for those that could not be captured."""
        problems: dict[int, str] = {}
        entries: list[dict] = []
        for failure in failures:
            try:
                entries.append(self._message(failure, request_id))
            except _NotCaptured as exc:
                problems[failure.index] = str(exc)
        if entries:
            notes: dict[str, str] = {}
            unsent = send_batch(
                self.sqs,
                self.queue_url,
                entries,
                max_batch_bytes=self.max_message_bytes,
                on_error=lambda message, reason: notes.__setitem__(message["Id"], reason),
            )
            for message in unsent:
                problems[int(message["Id"])] = notes.get(message["Id"], "not accepted by SQS")
        return problems
