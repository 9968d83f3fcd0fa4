"""What CloudWatch would hold for one emulated function, kept by the mapping emulator.

On AWS the operator page reads a consumer's own EMF counters (processed, failed, captured,
dropped, ...), Lambda's ``Errors`` and ``IteratorAge``, and the failure queue's depth from
CloudWatch. moto stores metrics but computes none of them, so the emulator keeps the same
numbers itself and writes them to its state file (``local.esm``): totals, the last batch
with records, and one bucket per minute for the last 3 hours (the page's charts).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from streamkit.timefmt import iso_from_epoch

SERIES_MINUTES = 180  # the page charts the last 3 hours
COUNTERS = ("processed", "failed", "captured", "dropped", "retried", "reported_for_retry")


def _bucket() -> dict[str, Any]:
    return {"iteratorAgeMax": 0.0, "failureQueueDepth": None, "errors": 0, "invocations": 0,
            **{name: 0 for name in COUNTERS}}


class FunctionMetrics:
    """Totals, the last batch and a per-minute series for one function."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {name: 0 for name in COUNTERS} | {"errors": 0, "invocations": 0}
        self.last_batch: dict[str, Any] | None = None
        self._series: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def _at(self, now: float) -> dict[str, Any]:
        minute = int(now // 60) * 60
        bucket = self._series.get(minute)
        if bucket is None:
            bucket = self._series[minute] = _bucket()
            while len(self._series) > SERIES_MINUTES:
                self._series.popitem(last=False)
        return bucket

    def invocation(self, now: float, counts: dict[str, int] | None, *, error: bool) -> None:
        """One invocation: the function's own counters (``None`` when it has none, e.g. it
        failed before its loop ran) and whether it errored (Lambda's ``Errors``)."""
        bucket = self._at(now)
        bucket["invocations"] += 1
        self.totals["invocations"] += 1
        if error:
            bucket["errors"] += 1
            self.totals["errors"] += 1
        if counts is None:
            return
        for name in COUNTERS:
            value = int(counts.get(name, 0) or 0)
            bucket[name] += value
            self.totals[name] += value
        if sum(int(counts.get(n, 0) or 0) for n in ("processed", "failed")):
            self.last_batch = {"at": iso_from_epoch(now), **{n: int(counts.get(n, 0) or 0) for n in COUNTERS}}

    def iterator_age(self, now: float, age_s: float) -> None:
        bucket = self._at(now)
        bucket["iteratorAgeMax"] = max(bucket["iteratorAgeMax"], round(age_s, 3))

    def queue_depth(self, now: float, depth: int) -> None:
        bucket = self._at(now)
        bucket["failureQueueDepth"] = max(bucket["failureQueueDepth"] or 0, depth)

    def state(self) -> dict[str, Any]:
        return {
            "totals": dict(self.totals),
            "lastBatch": self.last_batch,
            "series": [{"t": iso_from_epoch(minute), **bucket} for minute, bucket in self._series.items()],
        }
