"""Is a consumer OK, degraded, blocked or dropping? One derivation, fed the same way in AWS
and locally.

The inputs are the stack's alarms, the mapping, the ledger and the consumer's own metrics:

- **alarms**: in AWS, ``DescribeAlarms`` (the alarms the plugin generates, matched to a consumer
  by their metric and dimension, whatever their names); locally moto stores alarms but never
  evaluates them, so ``local_alarms`` computes the same states from the emulator's state file
  and the queue depths, with the same thresholds. Both give ``{kind: {"state", ...}}``.
- **mapping**: Lambda's event-source mapping, or the emulator's.
- **ledger**: open and parked failures by error type; the record a hard-fail consumer is
  blocked on (its real error, failed invocations so far).
- **drops**: records a soft-fail consumer dropped (its ``dropped`` metric).
- **circuit**: the sink's circuit breaker (``opsapi.circuits``): open or half-open holds the
  shard (dlq-capture, hard-fail: blocked) or drops records (soft-fail: dropping), unless its
  probe is long overdue (no invocation met it since: degraded, said so).

``derive`` turns them into a badge with the reasons, in words.
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from streamkit.ledger import age_out_at
from streamkit.timefmt import iso, parse_iso

ALARM, OK, NO_DATA = "ALARM", "OK", "INSUFFICIENT_DATA"
ALARM_KINDS = ("iteratorAge", "errors", "failureQueueDepth", "failureQueueAge", "parkingDepth")
RECENT_FAILURE_S = 300  # a blocking record that failed this recently is still blocking
STALE_STATE_S = 60  # the emulator writes its state at least every few seconds while it runs
DEFAULT_ITERATOR_AGE_ALARM_MS = 300_000  # serverless.yml's iteratorAgeAlarmMs (dev)
BADGES = ("ok", "degraded", "dropping", "blocked")


def _now() -> datetime:
    return datetime.now(UTC)


def age_s(text: Any, now: datetime | None = None) -> float | None:
    dt = parse_iso(text)
    return None if dt is None else round(((now or _now()) - dt).total_seconds(), 1)


# ---- alarms -------------------------------------------------------------------------------------
def _dimensions(alarm: dict) -> list[tuple[str, str, str, str]]:
    """(namespace, metric, dimension name, value) of an alarm, metric-math alarms included."""
    out = []
    metrics = [alarm] + [((m.get("MetricStat") or {}).get("Metric") or {}) for m in alarm.get("Metrics") or []]
    for m in metrics:
        for d in m.get("Dimensions") or []:
            out.append((m.get("Namespace") or "", m.get("MetricName") or "", d.get("Name"), d.get("Value")))
    return out


def classify_alarm(alarm: dict, *, function: str, failures_queue: str, parking_queue: str,
                   consumer: str) -> str | None:
    """Which of a consumer's alarms this is (``iteratorAge``, ``errors``, ...), ``other`` for
    one of its alarms on another metric, None when it is not this consumer's."""
    for _namespace, metric, name, value in _dimensions(alarm):
        if name == "FunctionName" and value == function:
            return {"IteratorAge": "iteratorAge", "Errors": "errors"}.get(metric, "other")
        if name == "QueueName" and value == failures_queue:
            return {"ApproximateNumberOfMessagesVisible": "failureQueueDepth",
                    "ApproximateAgeOfOldestMessage": "failureQueueAge"}.get(metric, "other")
        if name == "QueueName" and value == parking_queue:
            return "parkingDepth" if metric == "ApproximateNumberOfMessagesVisible" else "other"
        if name == "consumer" and value == consumer:
            return "other"
    return None


def aws_alarms(alarms: list[dict], **names: str) -> dict[str, Any]:
    """``DescribeAlarms``' metric alarms -> this consumer's ``{kind: state}`` (plus ``other``)."""
    out: dict[str, Any] = {"source": "cloudwatch", "other": []}
    for alarm in alarms:
        kind = classify_alarm(alarm, **names)
        if kind is None:
            continue
        entry = {"state": alarm.get("StateValue") or NO_DATA, "name": alarm.get("AlarmName"),
                 "reason": alarm.get("StateReason"), "updatedAt": _iso(alarm.get("StateUpdatedTimestamp"))}
        if kind == "other":
            out["other"].append(entry)
        elif kind not in out or entry["state"] == ALARM:
            out[kind] = entry
    return out


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return iso(value)
    return value if isinstance(value, str) else None


def iterator_age_threshold_ms(env: Any = None) -> int:
    env = os.environ if env is None else env
    try:
        return int(env.get("OPSAPI_ITERATOR_AGE_ALARM_MS") or DEFAULT_ITERATOR_AGE_ALARM_MS)
    except ValueError:
        return DEFAULT_ITERATOR_AGE_ALARM_MS


def local_alarms(mapping: dict | None, failures: dict, parking: dict, *, threshold_ms: int | None = None) -> dict:
    """The alarms' states as CloudWatch would set them, from the emulator's state and the queue
    depths (same metrics, same thresholds as the template's alarms)."""
    out: dict[str, Any] = {"source": "local", "other": []}
    threshold_ms = iterator_age_threshold_ms() if threshold_ms is None else threshold_ms
    if mapping and mapping.get("source") == "local-esm" and mapping.get("stale"):
        # CloudWatch says INSUFFICIENT_DATA when a metric stops arriving; an old state file is that
        note = f"no current data: {mapping['stale']}"
        out["iteratorAge"] = {"state": NO_DATA, "reason": note}
        out["errors"] = {"state": NO_DATA, "reason": note}
    elif mapping and mapping.get("source") == "local-esm":
        age = mapping.get("iteratorAgeSeconds")
        out["iteratorAge"] = {"state": NO_DATA if age is None else (ALARM if age * 1000 > threshold_ms else OK),
                              "reason": f"iterator age {age}s, threshold {threshold_ms / 1000:g}s"}
        series = ((mapping.get("function") or {}).get("series") or [])
        errors = series[-1].get("errors", 0) if series else 0
        out["errors"] = {"state": ALARM if errors >= 1 else OK, "reason": f"{errors} errors in the latest minute"}
    for kind, info in (("failureQueueDepth", failures), ("parkingDepth", parking)):
        if info.get("exists") and info.get("visible") is not None:
            out[kind] = {"state": ALARM if info["visible"] >= 1 else OK, "reason": f"{info['visible']} visible"}
    return out


# ---- drops (soft-fail) -----------------------------------------------------------------------
def drops_from_series(series: list[dict], last_batch: dict | None = None) -> dict:
    """Records dropped: in the consumer's latest batch with records (else its latest active
    minute) and over the series (3 hours)."""
    total = sum(int(b.get("dropped") or 0) for b in series)
    if last_batch is not None:
        return {"recent": int(last_batch.get("dropped") or 0), "recentAt": last_batch.get("at"), "last3h": total}
    active = [b for b in series if (b.get("processed") or 0) + (b.get("dropped") or 0) + (b.get("failed") or 0)]
    latest = active[-1] if active else None
    return {"recent": int(latest.get("dropped") or 0) if latest else 0, "recentAt": latest.get("t") if latest else None,
            "last3h": total}


# ---- the derivation ------------------------------------------------------------------------------
def _state(alarms: dict, kind: str) -> str | None:
    return (alarms.get(kind) or {}).get("state")


def blocking_detail(blocking: dict | None, mapping: dict | None, now: datetime | None = None) -> dict | None:
    """What a person needs of the record a hard-fail consumer is stuck on."""
    if not blocking:
        return None
    settings = (mapping or {}).get("settings") or {}
    max_retries = settings.get("MaximumRetryAttempts")
    max_age = settings.get("MaximumRecordAgeInSeconds")
    ages_out = age_out_at(blocking.get("recordCreatedAt"), max_age if isinstance(max_age, int) else None)
    return {
        "state": blocking.get("state"),
        "sequenceNumber": blocking.get("sequenceNumber"),
        "keys": blocking.get("keysText"),
        "errorType": blocking.get("errorType"),
        "errorMessage": blocking.get("errorMessage"),
        "attempts": blocking.get("attempts"),
        "maxRetryAttempts": max_retries if isinstance(max_retries, int) else None,
        "firstFailedAt": blocking.get("capturedAt"),
        "lastFailedAt": blocking.get("lastFailedAt"),
        "lastFailedAgeSeconds": age_s(blocking.get("lastFailedAt"), now),
        "recordCreatedAt": blocking.get("recordCreatedAt"),
        "agesOutAt": ages_out,
        "resolvedAt": blocking.get("resolvedAt"),
    }


def circuit_reason(circuit: dict) -> str:
    """An open or half-open circuit in words (the badge's reason)."""
    text = (f"sink circuit {circuit['state']}" + (f" since {circuit['since']}" if circuit.get("since") else "")
            + (f" ({circuit['reason']})" if circuit.get("reason") else "") + f": {circuit.get('whileOpen') or ''}")
    if circuit.get("note"):
        return f"{text}; {circuit['note']}"
    return text + (f"; next probe at {circuit['nextProbeAt']}" if circuit.get("nextProbeAt") else "")


def derive(policy: str, *, alarms: dict, mapping: dict | None, ledger: dict, drops: dict | None,
           failures: dict, blocking: dict | None, now: datetime | None = None, circuit: dict | None = None) -> dict:
    """``{"badge": ok|degraded|dropping|blocked|unknown, "reasons": [...]}`` (worst first)."""
    now = now or _now()
    blocked: list[str] = []
    dropping: list[str] = []
    degraded: list[str] = []
    unknown: list[str] = []
    mapping = mapping or {}
    circuit = circuit or {}
    if circuit.get("state") in ("open", "half-open"):
        where = degraded if circuit.get("probeOverdue") else dropping if policy == "soft-fail" else blocked
        where.append(circuit_reason(circuit))
    elif circuit.get("error"):
        unknown.append(f"circuit breaker state not readable: {circuit['error']}")
    if mapping.get("state") in ("Disabled", "Disabling"):
        blocked.append(f"its event-source mapping is {mapping['state']}: nothing is read from the stream")
    if blocking and blocking.get("state") == "blocked":
        recent = (blocking.get("lastFailedAgeSeconds") or 1e9) <= RECENT_FAILURE_S
        retrying = mapping.get("status") == "retrying"
        ages_out = parse_iso(blocking.get("agesOutAt"))
        aged_out = ages_out is not None and ages_out < now
        if (recent or retrying or _state(alarms, "iteratorAge") == ALARM) and not aged_out:
            used = blocking.get("attempts")
            of = blocking.get("maxRetryAttempts")
            text = (f"blocked on record {blocking.get('sequenceNumber')} ({blocking.get('keys')}): "
                    f"{blocking.get('errorType')}: {blocking.get('errorMessage')}; {used} failed invocations"
                    + (f" of {of + 1} allowed (MaximumRetryAttempts {of})" if isinstance(of, int) and of >= 0 else ""))
            if blocking.get("agesOutAt"):
                text += f"; its records age out at {blocking['agesOutAt']}"
            blocked.append(text)
    if policy == "hard-fail" and mapping.get("status") == "retrying" and not blocked:
        blocked.append(f"its mapping keeps retrying the same records ({mapping.get('lastError') or 'no error text'})")
    if _state(alarms, "iteratorAge") == ALARM:
        text = "falling behind the stream (IteratorAge alarm)"
        if policy != "hard-fail":
            degraded.append(text)
        elif not blocked:
            blocked.append(text)
    if policy == "soft-fail" and drops and drops.get("recent"):
        dropping.append(f"dropped {drops['recent']} records in its latest batch"
                        f" ({drops.get('last3h', drops['recent'])} in the last 3 h): logged, not retried")
    if ledger.get("error"):
        unknown.append(f"failure ledger not readable: {ledger['error']}")
    else:
        open_n = ledger.get("open") or 0
        if open_n:
            types = ", ".join(f"{t} x{n}" for t, n in (ledger.get("openByErrorType") or {}).items())
            degraded.append(f"{open_n} failures waiting for reprocessing: {types}")
        parked = (ledger.get("counts") or {}).get("parked") or 0
        if parked:
            degraded.append(f"{parked} parked: they need a person (redrive after the fix)")
        visible = failures.get("visible")
        if isinstance(visible, int) and visible > open_n:
            age = ledger.get("ageSeconds")
            degraded.append(f"{visible - open_n} message(s) in the failure queue the ledger does not list "
                            "(e.g. Lambda's on-failure records of a hard-fail consumer"
                            + (f"; the ledger was read {age:.0f}s ago" if isinstance(age, (int, float)) else "") + ")")
    if failures.get("error"):
        unknown.append(f"failure queue not readable: {failures['error']}")
    for kind in ("errors", "failureQueueDepth", "failureQueueAge", "parkingDepth"):
        if _state(alarms, kind) == ALARM and not (kind == "failureQueueDepth" and ledger.get("open")):
            degraded.append(f"alarm {(alarms[kind].get('name') or kind)} is in ALARM: {alarms[kind].get('reason') or ''}".strip())
    for other in alarms.get("other") or []:
        if other.get("state") == ALARM:
            degraded.append(f"alarm {other.get('name')} is in ALARM: {other.get('reason') or ''}".strip())
    if alarms.get("error"):
        unknown.append(f"alarms not readable: {alarms['error']}")
    if mapping.get("stale"):
        unknown.append(mapping["stale"])
    badge = "blocked" if blocked else "dropping" if dropping else "degraded" if degraded else "ok"
    if badge == "ok" and unknown and (ledger.get("error") and failures.get("error")):
        badge = "unknown"
    return {"badge": badge, "reasons": blocked + dropping + degraded, "unknown": unknown}
