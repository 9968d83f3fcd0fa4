"""A consumer's last 3 hours, minute by minute: iterator age, failure-queue depth, and records
handled / failed / dropped. The one owner of the chart data's shape:

    {"source": "cloudwatch" | "local-esm", "periodSeconds": 60, "from": iso, "to": iso,
     "series": {"iteratorAgeSeconds": [[iso, value], ...], "failureQueueDepth": [...],
                "handled": [...], "failed": [...], "dropped": [...]},
     "latest": {"iteratorAgeSeconds": v, "oldestFailureAgeSeconds": v}}

In AWS one ``GetMetricData`` call per consumer (cached 60 s) reads Lambda's ``IteratorAge``,
the failure queue's ``ApproximateNumberOfMessagesVisible`` and ``ApproximateAgeOfOldestMessage``
and the consumer's own EMF counters; locally the emulator's per-minute buckets stand in
(``local.metrics``). The page draws them as small SVG lines, no chart library.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from streamkit.timefmt import iso

HOURS = 3
PERIOD_S = 60
SERIES = ("iteratorAgeSeconds", "failureQueueDepth", "handled", "failed", "dropped")


def queries(*, function: str, failures_queue: str, consumer: str, namespace: str) -> list[dict]:
    """``MetricDataQueries`` for one consumer's charts (one GetMetricData call)."""

    def q(qid: str, ns: str, metric: str, dims: dict[str, str], stat: str) -> dict:
        return {"Id": qid, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": ns, "MetricName": metric,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
            "Period": PERIOD_S, "Stat": stat}}

    own = {"consumer": consumer, "service": consumer}  # Powertools EMF: service + default dimension
    return [
        q("iteratorAge", "AWS/Lambda", "IteratorAge", {"FunctionName": function}, "Maximum"),
        q("depth", "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": failures_queue}, "Maximum"),
        q("oldest", "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": failures_queue}, "Maximum"),
        q("handled", namespace, "processed", own, "Sum"),
        q("failed", namespace, "failed", own, "Sum"),
        q("dropped", namespace, "dropped", own, "Sum"),
    ]


def window(now: datetime | None = None) -> tuple[datetime, datetime]:
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    return end - timedelta(hours=HOURS), end


def from_cloudwatch(results: list[dict], start: datetime, end: datetime) -> dict:
    """``GetMetricData``'s ``MetricDataResults`` -> the chart shape (oldest point first)."""
    by_id = {r.get("Id"): r for r in results}

    def points(qid: str, scale: float = 1.0) -> list[list[Any]]:
        r = by_id.get(qid) or {}
        pairs = sorted(zip(r.get("Timestamps") or [], r.get("Values") or [], strict=False), key=lambda p: p[0])
        return [[iso(t) if isinstance(t, datetime) else str(t), round(float(v) * scale, 3)] for t, v in pairs]

    series = {"iteratorAgeSeconds": points("iteratorAge", 0.001), "failureQueueDepth": points("depth"),
              "handled": points("handled"), "failed": points("failed"), "dropped": points("dropped")}
    oldest = points("oldest")
    return {"source": "cloudwatch", "periodSeconds": PERIOD_S, "from": iso(start), "to": iso(end), "series": series,
            "latest": {"iteratorAgeSeconds": series["iteratorAgeSeconds"][-1][1] if series["iteratorAgeSeconds"] else None,
                       "oldestFailureAgeSeconds": oldest[-1][1] if oldest else None}}


def from_local(function_state: dict | None, now: datetime | None = None) -> dict:
    """The emulator's per-minute buckets (``local.metrics``) -> the chart shape."""
    start, end = window(now)
    buckets = (function_state or {}).get("series") or []
    series: dict[str, list] = {name: [] for name in SERIES}
    for b in buckets:
        t = b.get("t")
        series["iteratorAgeSeconds"].append([t, b.get("iteratorAgeMax") or 0])
        if b.get("failureQueueDepth") is not None:
            series["failureQueueDepth"].append([t, b["failureQueueDepth"]])
        series["handled"].append([t, b.get("processed") or 0])
        series["failed"].append([t, b.get("failed") or 0])
        series["dropped"].append([t, b.get("dropped") or 0])
    return {"source": "local-esm", "periodSeconds": PERIOD_S, "from": iso(start), "to": iso(end), "series": series,
            "latest": {"iteratorAgeSeconds": None, "oldestFailureAgeSeconds": None}}


def empty(why: str) -> dict:
    start, end = window()
    return {"source": None, "periodSeconds": PERIOD_S, "from": iso(start), "to": iso(end),
            "series": {name: [] for name in SERIES}, "latest": {}, "note": why}
