"""Write failed records to the consumer's failure queue, claim-checking oversized ones in S3,
and record the accepted ones in the failure ledger (``streamkit.ledger``).

Three steps, each its own method, and the ledger between them:

1. ``prepare``: build the SQS entries (envelope with the failure's one compact traceback,
   claim check in S3 when oversized). In the caller's thread.
2. ``send``: ``SendMessageBatch`` calls for up to 10 entries; what SQS did not accept is
   returned with the reason.
3. ``InFlight`` (dlq-capture's stream path): ``send`` runs on a small thread pool while the
   loop goes on, at most ``max_in_flight`` calls at a time; results come back per failure.

The ledger: what ``send`` reports as accepted (with SQS's message id) is kept
(``ledger_backlog``) and written in ``BatchWriteItem`` calls of 25 (``flush_ledger``, by the
policy: full calls as they fill, the rest at the end of the batch). A ledger write can never
turn a capture into a failure: a capture SQS accepted is safe whatever the ledger does.

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
from .timefmt import now_iso

if TYPE_CHECKING:  # the pool is made on the first capture: no thread machinery at cold start
    from concurrent.futures import Future, ThreadPoolExecutor

    from .ledger import Ledger

# a capture the ledger records: (envelope as sent, SQS message id, the full record)
Captured = tuple[dict, str, Any]

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
        ledger: Ledger | None = None,
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
        self.ledger = ledger
        self._ledger_pending: list[Captured] = []  # accepted captures not yet in the ledger

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

    def _message(self, failure: Failure, request_id: str | None) -> tuple[dict, dict]:
        """The SQS entry for ``failure`` and its envelope; raises ``_NotCaptured`` when none can be built."""
        error = failure.error_info  # formatted once: the failure log shows the same traceback
        attrs = message_attributes(self.consumer, error["type"])
        # one capture time for the envelope and its claim-check stub: the ledger id derives from it
        common: dict[str, Any] = dict(consumer=self.consumer, error=error, function_name=self.function_name,
                                      request_id=request_id, captured_at=now_iso())
        envelope = build_envelope(record=failure.raw, **common)
        entry = {
            "Id": str(failure.index),
            "MessageBody": dumps(envelope),
            "MessageAttributes": attrs,
        }
        size = message_size(entry)
        if size <= self.max_message_bytes:
            return entry, envelope
        if not self.bucket:
            raise _NotCaptured(
                f"envelope of {size} bytes exceeds the {self.max_message_bytes}-byte queue limit "
                "and no FAILURE_BUCKET is set for a claim check"
            )
        try:
            ref = self._claim_check(failure)
        except Exception as exc:
            raise _NotCaptured(f"claim check to s3://{self.bucket} failed: {type(exc).__name__}: {exc}") from None
        envelope = build_envelope(record=failure.raw, payload_ref=ref, **common)
        entry["MessageBody"] = dumps(envelope)
        if message_size(entry) > self.max_message_bytes:  # keys alone too large: nothing fits
            raise _NotCaptured(f"even the claim-check stub exceeds {self.max_message_bytes} bytes")
        return entry, envelope

    def prepare(self, failures: Sequence[Failure], request_id: str | None = None,
                envelopes: dict[int, dict] | None = None) -> tuple[list[dict], dict[int, str]]:
        """SQS entries for ``failures`` (``Id`` is the failure's index), and ``{index: why}``
        for those that cannot be captured at all; ``envelopes`` collects each entry's envelope."""
        problems: dict[int, str] = {}
        entries: list[dict] = []
        for failure in failures:
            try:
                entry, envelope = self._message(failure, request_id)
            except _NotCaptured as exc:
                problems[failure.index] = str(exc)
            else:
                entries.append(entry)
                if envelopes is not None:
                    envelopes[failure.index] = envelope
        return entries, problems

    # --- 2. send ------------------------------------------------------------------------------
    def send(self, entries: list[dict], accepted: dict[int, str] | None = None) -> dict[int, str]:
        """Send prepared entries; returns ``{index: why}`` for those SQS did not accept
        (``accepted`` collects ``{index: message id}`` of the others)."""
        if not entries:
            return {}
        notes: dict[str, str] = {}
        unsent = send_batch(
            self.sqs,
            self.queue_url,
            entries,
            max_batch_bytes=self.max_message_bytes,
            on_error=lambda message, reason: notes.__setitem__(message["Id"], reason),
            on_sent=None if accepted is None else lambda message, mid: accepted.__setitem__(int(message["Id"]), mid),
        )
        return {int(m["Id"]): notes.get(m["Id"], "not accepted by SQS") for m in unsent}

    def capture(self, failures: Sequence[Failure], request_id: str | None = None) -> dict[int, str]:
        """Capture ``failures`` now (prepare, send, ledger); returns ``{index: why}`` for those
        that could not be captured."""
        envelopes: dict[int, dict] = {}
        accepted: dict[int, str] = {}
        entries, problems = self.prepare(failures, request_id, envelopes if self.ledger else None)
        problems.update(self.send(entries, accepted if self.ledger else None))
        self.record(failures, envelopes, accepted)
        self.flush_ledger()
        return problems

    # --- the ledger -----------------------------------------------------------------------------
    def record(self, failures: Sequence[Failure], envelopes: dict[int, dict], accepted: dict[int, str]) -> None:
        """Keep what SQS accepted for the ledger (written by ``flush_ledger``)."""
        if self.ledger is None:
            return
        for failure in failures:
            if failure.index in accepted and failure.index in envelopes:
                self._ledger_pending.append((envelopes[failure.index], accepted[failure.index], failure.raw))

    @property
    def ledger_backlog(self) -> int:
        """Accepted captures whose ledger items are not written yet."""
        return len(self._ledger_pending)

    def flush_ledger(self, *, full_calls_only: bool = False) -> None:
        """Write the kept captures' ledger items (never raises: a failed write is logged and
        counted); ``full_calls_only`` keeps the rest of a call of 25 for later."""
        from .ledger import BATCH_WRITE_MAX

        n = len(self._ledger_pending)
        if full_calls_only:
            n -= n % BATCH_WRITE_MAX
        pending, self._ledger_pending = self._ledger_pending[:n], self._ledger_pending[n:]
        if self.ledger is not None and pending:
            self.ledger.put_failures(pending)

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
        # (failures, problems, send's future, their envelopes, SQS message ids of the accepted)
        self._groups: list[tuple[list[Failure], dict[int, str], Future, dict[int, dict], dict[int, str]]] = []
        self._submitted: dict[int, Failure] = {}  # id(failure) -> failure, until its result is handed back

    def __contains__(self, failure: Failure) -> bool:
        return id(failure) in self._submitted

    def __len__(self) -> int:
        return len(self._submitted)

    def submit(self, failures: Sequence[Failure], request_id: str | None) -> None:
        for start in range(0, len(failures), MAX_BATCH_ENTRIES):
            group = list(failures[start : start + MAX_BATCH_ENTRIES])
            envelopes: dict[int, dict] = {}
            accepted: dict[int, str] = {}
            ledger = self.capture.ledger is not None
            entries, problems = self.capture.prepare(group, request_id, envelopes if ledger else None)
            while len([g for g in self._groups if not g[2].done()]) >= self.capture.max_in_flight:
                next(g for g in self._groups if not g[2].done())[2].exception()  # wait for the oldest
            future = self.capture.pool().submit(self.capture.send, entries, accepted if ledger else None)
            self._groups.append((group, problems, future, envelopes, accepted))
            for failure in group:
                self._submitted[id(failure)] = failure

    def results(self, wait: bool) -> list[tuple[Failure, str | None]]:
        """``(failure, problem)`` of every group done (every group, when ``wait``), in the
        order they were submitted; each is handed back once."""
        out: list[tuple[Failure, str | None]] = []
        keep = []
        for group, problems, future, envelopes, accepted in self._groups:
            if not wait and not future.done():
                keep.append((group, problems, future, envelopes, accepted))
                continue
            try:
                unsent = future.result()
            except Exception as exc:  # a bug or an error send_batch did not absorb: not captured
                unsent = {f.index: f"{type(exc).__name__}: {exc}" for f in group}
            self.capture.record(group, envelopes, accepted)
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
