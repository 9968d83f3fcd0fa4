"""Write failed records to the consumer's failure queue, claim-checking oversized ones in S3.

Three steps, each its own method, so a step can be added between them (a failure ledger
records what ``send`` reports as accepted):

1. ``prepare``: build the SQS entries (envelope with the failure's one compact traceback,
   claim check in S3 when oversized). In the caller's thread.
2. ``send``: ``SendMessageBatch`` calls for up to 10 entries; what SQS did not accept is
   returned with the reason.
3. ``InFlight`` (dlq-capture's stream path): ``send`` runs on a small thread pool while the
   loop goes on, at most ``max_in_flight`` calls at a time; results come back per failure.

The SQS client is created with the ``FailureCapture``, at cold start, not on the first
failure (it took ~200 ms there); the S3 client only when a claim check is needed.
"""
from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .awsclient import make_client
from .batch import Failure
from .envelope import build_envelope, dumps, message_attributes
from .sqsbatch import DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, message_size, send_batch

if TYPE_CHECKING:  # the pool is made on the first capture: no thread machinery at cold start
    from concurrent.futures import Future, ThreadPoolExecutor

DEFAULT_MAX_IN_FLIGHT = 4  # concurrent SendMessageBatch calls per batch of captures


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
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        sqs: Any = None,
    ):
        self.consumer = consumer
        self.queue_url = queue_url
        self.bucket = bucket
        self.max_message_bytes = max_message_bytes
        self.function_name = function_name
        self.max_in_flight = max_in_flight
        # Made now (cold start): the first failing invocation must not pay for it. Pool sized
        # for the concurrent sends.
        self._sqs = sqs if sqs is not None else make_client("sqs", pool=max_in_flight)
        self._s3 = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def sqs(self) -> Any:
        return self._sqs

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = make_client("s3")
        return self._s3

    # --- 1. prepare ---------------------------------------------------------------------------
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
        error = failure.error_info  # formatted once: the failure log shows the same traceback
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

    def prepare(self, failures: Sequence[Failure], request_id: str | None = None) -> tuple[list[dict], dict[int, str]]:
        """SQS entries for ``failures`` (``Id`` is the failure's index), and ``{index: why}``
        for those that cannot be captured at all."""
        problems: dict[int, str] = {}
        entries: list[dict] = []
        for failure in failures:
            try:
                entries.append(self._message(failure, request_id))
            except _NotCaptured as exc:
                problems[failure.index] = str(exc)
        return entries, problems

    # --- 2. send ------------------------------------------------------------------------------
    def send(self, entries: list[dict]) -> dict[int, str]:
        """Send prepared entries; returns ``{index: why}`` for those SQS did not accept."""
        if not entries:
            return {}
        notes: dict[str, str] = {}
        unsent = send_batch(
            self.sqs,
            self.queue_url,
            entries,
            max_batch_bytes=self.max_message_bytes,
            on_error=lambda message, reason: notes.__setitem__(message["Id"], reason),
        )
        return {int(m["Id"]): notes.get(m["Id"], "not accepted by SQS") for m in unsent}

    def capture(self, failures: Sequence[Failure], request_id: str | None = None) -> dict[int, str]:
        """Capture ``failures`` now (prepare, then send); returns ``{index: why}`` for those
        that could not be captured."""
        entries, problems = self.prepare(failures, request_id)
        problems.update(self.send(entries))
        return problems

    # --- 3. concurrently -----------------------------------------------------------------------
    def pool(self) -> ThreadPoolExecutor:
        """The sender threads (made on the first capture, kept for the process)."""
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix=f"capture-{self.consumer}")
            return self._pool


class InFlight:
    """One batch's captures on their way: ``submit`` prepares failures and sends them in
    groups of up to 10 on ``FailureCapture``'s pool, at most ``max_in_flight`` groups at once
    (a further submit waits for the oldest); ``results`` hands back each failure with its
    problem (``None``: captured) as its group completes."""

    def __init__(self, capture: FailureCapture):
        self.capture = capture
        self._groups: list[tuple[list[Failure], dict[int, str], Future]] = []
        self._submitted: dict[int, Failure] = {}  # id(failure) -> failure, until its result is handed back

    def __contains__(self, failure: Failure) -> bool:
        return id(failure) in self._submitted

    def __len__(self) -> int:
        return len(self._submitted)

    def submit(self, failures: Sequence[Failure], request_id: str | None) -> None:
        for start in range(0, len(failures), MAX_BATCH_ENTRIES):
            group = list(failures[start : start + MAX_BATCH_ENTRIES])
            entries, problems = self.capture.prepare(group, request_id)
            while len([g for g in self._groups if not g[2].done()]) >= self.capture.max_in_flight:
                next(g for g in self._groups if not g[2].done())[2].exception()  # wait for the oldest
            future = self.capture.pool().submit(self.capture.send, entries)
            self._groups.append((group, problems, future))
            for failure in group:
                self._submitted[id(failure)] = failure

    def results(self, wait: bool) -> list[tuple[Failure, str | None]]:
        """``(failure, problem)`` of every group done (every group, when ``wait``), in the
        order they were submitted; each is handed back once."""
        out: list[tuple[Failure, str | None]] = []
        keep = []
        for group, problems, future in self._groups:
            if not wait and not future.done():
                keep.append((group, problems, future))
                continue
            try:
                unsent = future.result()
            except Exception as exc:  # a bug or an error send_batch did not absorb: not captured
                unsent = {f.index: f"{type(exc).__name__}: {exc}" for f in group}
            for failure in group:
                self._submitted.pop(id(failure), None)
                out.append((failure, problems.get(failure.index) or unsent.get(failure.index)))
        self._groups = keep
        return out

    def forget_all_but(self, held: Sequence[Failure]) -> None:
        """Drop what a batch that ended abnormally left behind (nothing of it is still held)."""
        live = {id(f) for f in held}
        stale = [key for key in self._submitted if key not in live]
        if stale:
            for key in stale:
                self._submitted.pop(key)
            self._groups = [g for g in self._groups if any(id(f) in live for f in g[0])]
