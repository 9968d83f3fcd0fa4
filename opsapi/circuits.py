"""Each consumer's sink circuit breaker as the operator sees it (``GET /consumers/<name>``'s
``circuit``): read from ``CircuitTable`` with ``GetItem`` (``streamkit.circuit.parse_state``
is the one reader of its item), cached for a few seconds, and put in words: closed, open or
half-open, since when, why, when the next probe is due, and what an open circuit does to this
consumer's records under its policy.

The state is written only on transitions, by the invocations that meet the sink. So an open
circuit whose probe is long overdue is stated as such: no invocation has come to probe (no
records waiting), and what is shown is the state as of its last transition, with its age.
Nothing here raises: an error is reported in the answer (``error``), never as "closed".
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from consumers.registry import stack_prefix
from streamkit.awsclient import ClientCache, describe_aws_error
from streamkit.circuit import HALF_OPEN, OPEN, parse_state
from streamkit.timefmt import age_words, iso_from_epoch, now_iso

DEFAULT_TTL_S = 5.0  # the breaker's own cache (CIRCUIT_CACHE_S) trusts a read as long
OVERDUE_S = 60.0  # a probe this late means no invocation came to make it

# what the open circuit does to a consumer's records, per policy (streamkit.circuit's docstring)
WHILE_OPEN = {
    "hard-fail": "records are held, not sent: the shard waits (reported for retry) until a probe gets through; "
                 "nothing is skipped",
    "dlq-capture": "records are held, not sent and not captured: the shard waits (reported for retry) until a "
                   "probe gets through",
    "soft-fail": "records are dropped without calling the sink (logged, counted as dropped and circuit_open); "
                 "they are not retried",
}


def circuit_table_name(env: Any = None) -> str:
    """``CIRCUIT_TABLE``, else the deployed name ``{SERVICE_NAME}-{STAGE}-circuits``."""
    env = os.environ if env is None else env
    return env.get("CIRCUIT_TABLE") or f"{stack_prefix(env)}-circuits"


def breaker_configured(function_env: dict | None) -> bool | None:
    """Does the consumer's function have a breaker (``CIRCUIT_FAILURES`` > 0)? ``None``: its
    environment could not be read."""
    if not function_env:
        return None
    return (function_env.get("CIRCUIT_FAILURES") or "0").strip() not in ("", "0")


def describe(item: dict | None, policy: str, *, now: float | None = None) -> dict:
    """A ``CircuitTable`` item (boto3 low-level, or None) -> the API's ``circuit`` fields."""
    now = time.time() if now is None else now
    st = parse_state(item)
    out: dict[str, Any] = {"state": {OPEN: "open", HALF_OPEN: "half-open"}.get(st.state, "closed")}
    if st.state in (OPEN, HALF_OPEN):
        due: float | None = None
        if st.state == OPEN and st.probe_s:
            due = st.opened_at + st.probe_s
        elif st.state == HALF_OPEN:
            due = st.probe_until
        out.update(since=iso_from_epoch(st.opened_at) if st.opened_at else None,
                   sinceAgeSeconds=round(now - st.opened_at, 1) if st.opened_at else None,
                   reason=st.reason or None, nextProbeAt=iso_from_epoch(due) if due else None,
                   nextProbeInSeconds=round(due - now, 1) if due else None,
                   probeEverySeconds=st.probe_s or None, whileOpen=WHILE_OPEN.get(policy))
        late = None if due is None else now - due
        out["probeOverdue"] = late is not None and late > OVERDUE_S
        if late is not None and late > OVERDUE_S:
            out["note"] = (f"the next probe was due {age_words(late)} ago and none came: no invocation has "
                           "met the circuit since (no records waiting?); this is its state as of its last "
                           "transition, and the next record's invocation probes the sink")
        elif due is None:
            out["note"] = "when the next probe is due is unknown (the circuit was opened by an older breaker)"
    else:
        out.update(since=iso_from_epoch(st.closed_at) if st.closed_at else None,
                   sinceAgeSeconds=round(now - st.closed_at, 1) if st.closed_at else None)
        if not item:
            out["note"] = "never opened"
    return out


class CircuitView:
    """Reads the circuit table for the operator API (one ``GetItem`` per consumer per ``ttl_s``)."""

    def __init__(self, clients: ClientCache, table: str | None = None, *, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.clients, self.ttl_s, self.clock = clients, ttl_s, clock
        self.table = table or circuit_table_name()
        self._cache: dict[str, tuple[float, dict | None, str | None, str, float]] = {}
        self._lock = threading.Lock()

    def _read(self, consumer: str) -> tuple[dict | None, str | None, str, float]:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(consumer)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1:]
        try:
            item = self.clients.get("dynamodb").get_item(TableName=self.table, Key={"consumer": {"S": consumer}},
                                                         ConsistentRead=True).get("Item")
            error = None
        except Exception as exc:
            item, error = None, describe_aws_error(exc)
        value = (item, error, now_iso(), time.time())
        with self._lock:
            self._cache[consumer] = (now, *value)
        return value

    def status(self, consumer: str, policy: str, *, configured: Callable[[], bool | None] | None = None) -> dict:
        """``{"state": closed|open|half-open|off|unknown, "since", "nextProbeAt", "reason",
        "whileOpen", "table", "readAt", "ageSeconds", "note"?, "error"?}``. ``configured()``
        (asked only when the consumer has no item) tells "never opened" from "no breaker"."""
        item, error, read_at, read_epoch = self._read(consumer)
        base = {"table": self.table, "readAt": read_at, "ageSeconds": round(max(0.0, time.time() - read_epoch), 1)}
        if error is not None:
            return {"state": "unknown", **base, "error": error,
                    "note": "the circuit table is not readable: whether the sink's circuit is open is unknown"}
        if not item and configured is not None and configured() is False:
            return {"state": "off", **base, "note": "no circuit breaker for this consumer (circuitBreaker unset)"}
        return {**describe(item, policy), **base}
