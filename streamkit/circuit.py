"""A circuit breaker per consumer's sink, shared by every invocation through DynamoDB.

When a sink is down, calling it record after record only burns in-process retries, and a
dlq-capture consumer fills its failure queue with thousands of records that were fine. After
``CIRCUIT_FAILURES`` consecutive transient failures the circuit **opens**, and the loop stops
calling ``handle_record``:

* dlq-capture and hard-fail hold the shard: the invocation waits (within its deadline) for the
  next probe, and when the deadline comes first it reports the rest of the batch for retry,
  so the shard waits, IteratorAge rises and its alarm fires. Waiting inside the invocation
  keeps Lambda's retries of the batch (``MaximumRetryAttempts``) from running out during an
  outage: reporting at once would burn one per backoff step.
* soft-fail drops the record, logged, as its policy says (``FailurePolicy.on_circuit_open``).

Every ``CIRCUIT_PROBE_S`` one invocation wins the right to send one record through
(**half-open**): if the sink answers, the circuit **closes** and the batch goes on; if not,
it reopens for another interval. The consumer resumes by itself.

What counts: a transient failure (``is_transient``: 429, 5xx, timeouts, throttling) is a
failure; a success or a ``PermanentError`` (the sink answered: the record is bad, not the
sink) is a success; anything else (a schema ``KeyError`` before any call) counts neither way.
The failure that opens the circuit is raised as ``CircuitOpenError``, so that record too is
held (or dropped by soft-fail), not captured.

State (shared): one item per consumer in ``CIRCUIT_TABLE`` (key ``consumer``), with ``state``
(CLOSED/OPEN/HALF_OPEN), ``opened_at``, ``probe_owner``, ``probe_until``, ``open_reason``.
Reads are eventually consistent ``GetItem`` calls, cached ``CIRCUIT_CACHE_S`` per execution
environment (one read per environment per interval on the hot path); writes happen only on
transitions, each a conditional ``UpdateItem`` that one invocation wins. Each function's role
may touch only its own item (``dynamodb:LeadingKeys``). Consecutive failures are counted per
execution environment. If the state cannot be read or written, the breaker fails open: records
are tried, as without it.

Every transition: a log line ``circuit_transition`` (from, to, reason) and a metric
(``circuit_opened``, ``circuit_half_open``, ``circuit_closed``, ``circuit_reopened``). Every
invocation the open circuit kept records from the sink (held for retry, or dropped by
soft-fail) counts them in ``circuit_open`` (``count_refused``; the plugin's ``<consumer>-circuit-open``
alarm). The item also keeps ``probe_s`` (the interval, so a reader can say when the next probe
is due) and ``closed_at``; ``parse_state`` is the one reader of its format (the operator API
uses it too).
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PermanentError, StreamkitError, is_transient
from .settings import Setting, When

CIRCUIT_FAILURES = Setting(
    "CIRCUIT_FAILURES",
    "open the sink's circuit breaker after this many consecutive transient failures (0: no breaker; "
    "serverless.yml: the consumer's circuitBreaker.failures)",
    parse=int, default=0, low=0, high=1_000,
)
CIRCUIT_PROBE_S = Setting(
    "CIRCUIT_PROBE_S",
    "while the sink's circuit is open, one record probes the sink this often (seconds; circuitBreaker.probeSeconds)",
    parse=float, default=30.0, low=1, high=3_600,
)
CIRCUIT_CACHE_S = Setting(
    "CIRCUIT_CACHE_S", "how long an execution environment trusts its last read of the shared circuit state (seconds)",
    parse=float, default=5.0, low=0, high=300,
)
CIRCUIT_TABLE = Setting(
    "CIRCUIT_TABLE", "DynamoDB table (key `consumer`) holding each consumer's circuit state, shared by its invocations",
    required=When("when CIRCUIT_FAILURES > 0", lambda env: (env.get("CIRCUIT_FAILURES") or "0").strip() not in ("", "0")),
)
SETTINGS = (CIRCUIT_FAILURES, CIRCUIT_PROBE_S, CIRCUIT_CACHE_S, CIRCUIT_TABLE)

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"
METRICS = {(CLOSED, OPEN): "circuit_opened", (OPEN, HALF_OPEN): "circuit_half_open",
           (HALF_OPEN, HALF_OPEN): "circuit_half_open", (HALF_OPEN, CLOSED): "circuit_closed",
           (HALF_OPEN, OPEN): "circuit_reopened"}
# records the open circuit held for retry or dropped (the one whose failure opened it included),
# counted per invocation that met it
METRIC_OPEN = "circuit_open"
MIN_POLL_S = 1.0  # a waiting invocation reads the shared state at most this often
CIRCUIT_OPEN_REPORT = "sink circuit open; reporting it and the rest of the batch for retry (the shard waits)"


class CircuitOpenError(StreamkitError):
    """The consumer's sink circuit is open: the record was not sent (or its failure opened it).

    ``retry_in``: seconds after which asking again may get through (the next probe, or the
    next read of the shared state)."""

    transient = False  # never retried in-process by the retry loop: the breaker paces the calls

    def __init__(self, message: str, retry_in: float):
        super().__init__(message)
        self.retry_in = max(0.0, retry_in)


@dataclass(frozen=True)
class CircuitState:
    state: str = CLOSED
    opened_at: float = 0.0
    probe_owner: str | None = None
    probe_until: float = 0.0
    reason: str = ""
    probe_s: float = 0.0  # the probe interval, as the breaker that opened it knew it (0: not stored)
    closed_at: float = 0.0


class CircuitBreaker:
    """The breaker of one consumer's sink; ``wrap(handle_record)`` gives the guarded call.

    ``clock`` is wall-clock time (``time.time``): the state is shared between execution
    environments, so its times must mean the same in each."""

    def __init__(self, consumer: str, *, table: str, failures: int, probe_s: float, cache_s: float = 5.0,
                 clock: Callable[[], float] | None = None, client: Any = None):
        self.consumer, self.table = consumer, table
        self.failures, self.probe_s, self.cache_s = failures, probe_s, cache_s
        self.clock = clock or time.time
        self._client = client
        self.me = uuid.uuid4().hex  # this execution environment, when it holds the probe
        self._consecutive = 0
        self._cached: CircuitState | None = None
        self._read_at = float("-inf")
        self._probing = False

    @classmethod
    def from_settings(cls, consumer: str, values: Mapping[str, Any]) -> CircuitBreaker | None:
        """From ``settings.load(SETTINGS, ...)``'s values; ``None`` when ``CIRCUIT_FAILURES`` is 0."""
        if not values["CIRCUIT_FAILURES"]:
            return None
        return cls(consumer, table=values["CIRCUIT_TABLE"], failures=values["CIRCUIT_FAILURES"],
                   probe_s=values["CIRCUIT_PROBE_S"], cache_s=values["CIRCUIT_CACHE_S"])

    @property
    def key(self) -> dict:
        return {"consumer": {"S": self.consumer}}

    @property
    def poll_s(self) -> float:
        return max(self.cache_s, MIN_POLL_S)

    # --- the guarded call ---------------------------------------------------------------------
    def wrap(self, handle_record: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def guarded(record: Any) -> Any:
            self._admit()
            try:
                result = handle_record(record)
            except Exception as exc:
                if is_transient(exc):
                    self._failed(exc)
                elif isinstance(exc, PermanentError):
                    self._succeeded()
                raise
            self._succeeded()
            return result

        return guarded

    def _admit(self) -> None:
        """Return when the record may go to the sink (closed, or this one is the probe)."""
        st = self._state()
        if st.state == CLOSED:
            return
        if st.state == HALF_OPEN and st.probe_owner == self.me and self._probing:
            return
        now = self.clock()
        due_at = st.opened_at + self.probe_s if st.state == OPEN else st.probe_until
        if now >= due_at and self._elect(st, now):
            return
        wait = max(0.0, due_at - now)
        raise CircuitOpenError(
            f"{self.consumer}: the sink's circuit is {st.state.lower().replace('_', '-')} "
            f"({st.reason or 'too many transient failures'}); next probe in {wait:.0f} s",
            retry_in=min(wait, self.poll_s) if wait > 0 else self.poll_s,
        )

    def _failed(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        if self._probing:
            self._probing = False
            self._consecutive = 0
            self._transition(HALF_OPEN, OPEN, f"the probe failed: {reason}", "probe_owner = :me")
            raise CircuitOpenError(f"{self.consumer}: the probe failed, the circuit stays open ({reason})",
                                   retry_in=min(self.probe_s, self.poll_s)) from exc
        self._consecutive += 1
        if self._consecutive < self.failures:
            return
        self._consecutive = 0
        self._transition(CLOSED, OPEN, f"{self.failures} consecutive transient failures, the last: {reason}",
                         "attribute_not_exists(#s) OR #s = :closed")
        raise CircuitOpenError(f"{self.consumer}: this failure opened the sink's circuit ({reason})",
                               retry_in=min(self.probe_s, self.poll_s)) from exc

    def _succeeded(self) -> None:
        self._consecutive = 0
        if self._probing:
            self._probing = False
            self._transition(HALF_OPEN, CLOSED, "the probe succeeded", "probe_owner = :me")

    # --- shared state ---------------------------------------------------------------------------
    def _dynamodb(self) -> Any:
        if self._client is None:
            self._client = _shared_client()
        return self._client

    def state(self) -> CircuitState:
        """The shared state, read now (tests, the operator)."""
        self._read_at = float("-inf")
        return self._state()

    def _state(self) -> CircuitState:
        now = self.clock()
        if self._cached is not None and now - self._read_at < self.cache_s:
            return self._cached
        try:
            item = self._dynamodb().get_item(TableName=self.table, Key=self.key).get("Item")
        except Exception as exc:  # fail open: a breaker must never stop a healthy sink
            self._log().warning("circuit_state_unreadable", error=repr(exc)[:300])
            return self._cached or CircuitState()
        st = self._cached = parse_state(item)
        self._read_at = now
        return st

    def _elect(self, seen: CircuitState, now: float) -> bool:
        """Try to become the one prober of this interval (a conditional write one invocation wins)."""
        until = now + self.probe_s
        won = self._update(
            "SET #s = :half, probe_owner = :me, probe_until = :until",
            "(#s = :open AND opened_at = :seen) OR (#s = :half AND probe_until <= :now)",
            {":half": {"S": HALF_OPEN}, ":open": {"S": OPEN}, ":me": {"S": self.me},
             ":until": {"N": repr(until)}, ":seen": {"N": repr(seen.opened_at)}, ":now": {"N": repr(now)}},
        )
        if not won:
            self._read_at = float("-inf")  # someone else moved it: read again next time
            return False
        self._probing = True
        self._cached, self._read_at = CircuitState(HALF_OPEN, seen.opened_at, self.me, until, seen.reason,
                                                   self.probe_s), now
        self._announce(seen.state, HALF_OPEN, "probe due" if seen.state == OPEN else "the last probe never ended")
        return True

    def _transition(self, src: str, dst: str, reason: str, condition: str) -> None:
        now = self.clock()
        values = {":to": {"S": dst}, ":now": {"N": repr(now)}, ":why": {"S": reason[:500]}}
        if dst == OPEN:
            update = ("SET #s = :to, opened_at = :now, open_reason = :why, probe_s = :every "
                      "REMOVE probe_owner, probe_until")
            values[":every"] = {"N": repr(float(self.probe_s))}
            state = CircuitState(OPEN, now, None, 0.0, reason, self.probe_s)
        else:
            update = "SET #s = :to, closed_at = :now, open_reason = :why REMOVE probe_owner, probe_until, opened_at"
            state = CircuitState(closed_at=now)
        if ":closed" in condition:
            values[":closed"] = {"S": CLOSED}
        if ":me" in condition:
            values[":me"] = {"S": self.me}
        if self._update(update, condition, values):
            self._cached, self._read_at = state, now
            self._announce(src, dst, reason)
        else:
            self._read_at = float("-inf")

    def _update(self, update: str, condition: str, values: dict) -> bool:
        client = self._dynamodb()
        try:
            client.update_item(TableName=self.table, Key=self.key, UpdateExpression=update,
                               ConditionExpression=condition, ExpressionAttributeNames={"#s": "state"},
                               ExpressionAttributeValues=values)
            return True
        except client.exceptions.ConditionalCheckFailedException:
            return False
        except Exception as exc:  # fail open (no transition), and say so
            self._log().error("circuit_state_unwritable", to_state=values[":to" if ":to" in values else ":half"]["S"],
                              error=repr(exc)[:300])
            return False

    def count_refused(self, records: int) -> None:
        """An invocation met the open circuit: ``records`` were held for retry or dropped by
        soft-fail because of it, not sent (the one whose failure opened it included). One EMF
        document (``circuit_open``), what the consumer's circuit-open alarm counts."""
        if records <= 0:
            return
        try:
            from .metrics import count_now

            count_now(self.consumer, METRIC_OPEN, records)
        except Exception as exc:  # a metric never breaks the loop
            self._log().error("metric_failed", error=repr(exc)[:200])

    def _announce(self, src: str, dst: str, reason: str) -> None:
        self._log().warning("circuit_transition", from_state=src, to_state=dst, reason=reason[:300],
                            probe_every_s=self.probe_s)
        try:
            from .metrics import count_now

            count_now(self.consumer, METRICS[(src, dst)])
        except Exception as exc:  # a metric never breaks the loop
            self._log().error("metric_failed", error=repr(exc)[:200])

    def _log(self) -> Any:
        from .log import get_logger

        return get_logger(consumer=self.consumer, component="circuit")


_clients: dict[str | None, Any] = {}
_clients_lock = threading.Lock()


def _shared_client() -> Any:
    """One DynamoDB client per process and endpoint, quick to give up (a breaker fails open)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    with _clients_lock:
        client = _clients.get(endpoint)
        if client is None:
            from .awsclient import make_client

            client = _clients[endpoint] = make_client("dynamodb", max_attempts=2, connect_timeout=1, read_timeout=2)
        return client


def parse_state(item: dict | None) -> CircuitState:
    """A ``CircuitTable`` item as boto3's low-level client reads it -> ``CircuitState`` (no item:
    closed, never opened)."""
    if not item:
        return CircuitState()

    def num(name: str) -> float:
        return float(item.get(name, {}).get("N", 0))

    return CircuitState(
        state=item.get("state", {}).get("S", CLOSED),
        opened_at=num("opened_at"),
        probe_owner=item.get("probe_owner", {}).get("S"),
        probe_until=num("probe_until"),
        reason=item.get("open_reason", {}).get("S", ""),
        probe_s=num("probe_s"),
        closed_at=num("closed_at"),
    )
