"""Keep the messages a run is working on hidden for as long as it works on them.

A received message is hidden for the visibility timeout (120 s by default). A round that
runs longer than that has two causes: a slow sink with retries, or a large round read ahead
behind a slow one. When the timeout passes, SQS shows the message to the next receiver. That
can be another worker, the reprocess Lambda's next run, or this run's own read-ahead. The
records are then applied twice, and this run's delete, made with the older receipt handle,
may not take.

``VisibilityKeeper`` is a heartbeat. It tracks every message from its receive until the run
has settled it. Before half of the timeout has passed, it extends the message's visibility by
the timeout again, with ``ChangeMessageVisibilityBatch``. A failed extension is noted and
retried on the next beat. It never ends the run: the worst case is the redelivery the keeper
exists to prevent, and that redelivery is guarded (the sinks and the worker's holds).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .summary import Summary

MIN_VISIBILITY_S = 2  # below this, a beat cannot land in time: no heartbeat (a dry run's brief hide)
MAX_BEAT_S = 15.0


class VisibilityKeeper:
    """A daemon thread that extends the visibility of the messages it tracks; thread-safe."""

    def __init__(self, sqs: Any, queue_url: str, visibility_timeout_s: int, summary: Summary, *,
                 clock: Callable[[], float] = time.monotonic):
        self.sqs, self.queue_url, self.summary, self.clock = sqs, queue_url, summary, clock
        self.visibility_timeout_s = visibility_timeout_s
        self.enabled = visibility_timeout_s >= MIN_VISIBILITY_S
        # when to extend: half the timeout after the receive (or the last extension)
        self.extend_after_s = visibility_timeout_s / 2
        self.beat_s = min(MAX_BEAT_S, visibility_timeout_s / 6)
        self._lock = threading.Lock()
        self._tracked: dict[str, tuple[str, float]] = {}  # MessageId -> (receipt handle, hidden since)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.extended = 0
        self.failed = 0

    def track(self, messages: Iterable[dict]) -> None:
        if not self.enabled:
            return
        now = self.clock()
        with self._lock:
            for m in messages:
                self._tracked[m["MessageId"]] = (m["ReceiptHandle"], now)
            if self._thread is None and self._tracked:
                self._thread = threading.Thread(target=self._run, name="reprocess-visibility", daemon=True)
                self._thread.start()

    def untrack(self, message_ids: Iterable[str]) -> None:
        with self._lock:
            for mid in message_ids:
                self._tracked.pop(mid, None)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            self._tracked.clear()

    # ---- the beat --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.beat_s):
            self.beat()

    def beat(self) -> None:
        """Extend every tracked message hidden for longer than ``extend_after_s``."""
        now = self.clock()
        with self._lock:
            due = [(mid, receipt) for mid, (receipt, since) in self._tracked.items()
                   if now - since >= self.extend_after_s]
        for i in range(0, len(due), 10):
            chunk = due[i : i + 10]
            entries = [{"Id": str(j), "ReceiptHandle": receipt, "VisibilityTimeout": self.visibility_timeout_s}
                       for j, (_, receipt) in enumerate(chunk)]
            try:
                resp = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                self.failed += len(chunk)
                self.summary.note(f"could not extend the visibility of messages being worked on: "
                                  f"{type(exc).__name__}: {exc}"[:300])
                continue
            failed = {f.get("Id") for f in resp.get("Failed") or []}
            self.failed += len(failed)
            with self._lock:
                for j, (mid, receipt) in enumerate(chunk):
                    if str(j) not in failed and mid in self._tracked and self._tracked[mid][0] == receipt:
                        self._tracked[mid] = (receipt, now)
                        self.extended += 1
