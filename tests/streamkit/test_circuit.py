"""The sink's circuit breaker (issue 14, item 5; ``streamkit.circuit``), state on moto.

Time is a ``FakeClock`` shared by the loop (deadline, waits) and the breaker (the shared
state's times), so a 30 s probe interval passes without waiting. Every test asserts what
reached the sink, what was reported, captured or dropped, and the shared state.
"""
from __future__ import annotations

import json

import boto3
import pytest

from streamkit import ConfigError, PermanentError, TransientError, stream_handler
from streamkit.circuit import CircuitBreaker
from tests.support.aws import create_circuit_table, take_all

from .helpers import FakeClock, event_of, seqs, user_records

PROBE_S = 30


class Sink:
    """A ``handle_record`` over a sink that is up or down; counts the calls that reached it."""

    def __init__(self):
        self.down = False
        self.calls: list[str] = []
        self.during_call = None  # run inside a call (a concurrent invocation's view)

    def __call__(self, record) -> None:
        self.calls.append(record.sequence_number)
        if self.during_call is not None:
            self.during_call()
        if self.down:
            raise TransientError("sink answered 503")


@pytest.fixture
def circuits(aws, monkeypatch, quiet_env):
    monkeypatch.setenv("CIRCUIT_TABLE", create_circuit_table("circuits"))
    monkeypatch.setenv("CIRCUIT_PROBE_S", str(PROBE_S))
    monkeypatch.setenv("CIRCUIT_CACHE_S", "5")
    return "circuits"


def make(sink, policy: str, clock: FakeClock, failures: int = 3, retries: int = 2, name: str = "c"):
    """One execution environment of consumer ``name``: its handler, in ``clock``'s time."""
    env_failures = {"CIRCUIT_FAILURES": str(failures), "MAX_TRANSIENT_RETRIES": str(retries)}
    import os

    handler = stream_handler(name, sink, policy=policy, env={**os.environ, **env_failures})
    handler.loop.clock = clock.monotonic
    handler.loop.sleep = clock.advance
    handler.loop.breaker.clock = clock.monotonic
    return handler


def stored(consumer: str = "c") -> dict:
    item = boto3.client("dynamodb").get_item(TableName="circuits", Key={"consumer": {"S": consumer}},
                                              ConsistentRead=True).get("Item") or {}
    return {k: list(v.values())[0] for k, v in item.items()}


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def transitions(out: str) -> list[tuple[str, str]]:
    return [(e["from_state"], e["to_state"]) for e in lines(out) if e.get("event") == "circuit_transition"]


def metrics(out: str) -> list[str]:
    """The transitions' metrics (``circuit_open``, records kept from the sink, is asserted apart)."""
    return [name for e in lines(out) if "_aws" in e for name in e if name.startswith("circuit_")
            and name != "circuit_open"]


def conserved(handler, n: int) -> None:
    b = handler.loop.last_batch
    assert b.handled + b.captured + len(b.reported) + b.dropped == n


def test_hard_fail_opens_after_n_consecutive_transient_failures_then_stops_calling(circuits, capsys):
    clock, sink = FakeClock(), Sink()
    handler = make(sink, "hard-fail", clock, failures=3, retries=2)
    sink.down = True
    records = user_records(5)
    # 10 s left: less than the 30 s until the probe, so the invocation does not wait for it
    out = handler(event_of(records), clock.context(10_000))
    assert sink.calls == [seqs(records)[0]] * 3  # the first try and two retries: the third failure opens it
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == seqs(records)  # every one, in order
    conserved(handler, 5)
    assert stored()["state"] == "OPEN" and "3 consecutive transient failures" in stored()["open_reason"]
    logged = capsys.readouterr().out
    assert transitions(logged) == [("CLOSED", "OPEN")] and metrics(logged) == ["circuit_opened"]

    # the next invocation, 5 s later: the circuit is open, the sink is not called at all
    clock.advance(5)
    out = handler(event_of(records), clock.context(10_000))
    assert len(sink.calls) == 3
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == seqs(records)
    conserved(handler, 5)
    assert handler.loop.last_batch.handled == 0 and handler.loop.last_batch.dropped == 0


def test_dlq_capture_stops_capturing_once_open(circuits, queue_url, monkeypatch):
    """Before the circuit opens, a failed record is captured as the policy says; from the
    failure that opens it on, the rest is reported for retry, not captured."""
    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    clock, sink = FakeClock(), Sink()
    handler = make(sink, "dlq-capture", clock, failures=3, retries=0)
    sink.down = True
    records = user_records(10)
    out = handler(event_of(records), clock.context(10_000))
    b = handler.loop.last_batch
    assert len(sink.calls) == 3 and b.captured == 2 and sorted(b.reported) == list(range(2, 10))
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == seqs(records)[2:]
    conserved(handler, 10)
    assert len(take_all(queue_url)) == 2

    clock.advance(1)
    out = handler(event_of(records[2:]), clock.context(10_000))
    assert len(sink.calls) == 3 and handler.loop.last_batch.captured == 0
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == seqs(records)[2:]
    assert take_all(queue_url) == []


def test_soft_fail_drops_without_calling_and_does_not_wait(circuits, capsys):
    clock, sink = FakeClock(), Sink()
    handler = make(sink, "soft-fail", clock, failures=2, retries=0)
    sink.down = True
    records = user_records(6)
    start = clock.now
    out = handler(event_of(records), clock.context(60_000))
    assert out == {"batchItemFailures": []}
    assert len(sink.calls) == 2  # the second failure opened the circuit; four records never reached the sink
    b = handler.loop.last_batch
    assert b.dropped == 6 and b.handled == 0
    conserved(handler, 6)
    assert clock.now == start  # soft-fail never holds its shard for a probe
    drops = [e for e in lines(capsys.readouterr().out) if e.get("event") == "record failed; soft-fail policy moves on"]
    assert len(drops) == 6 and [e["error_type"] for e in drops[2:]] == ["CircuitOpenError"] * 4


def test_an_open_circuit_holds_the_shard_until_the_probe_and_resumes_by_itself(circuits, capsys):
    """With time enough in the invocation, hard-fail waits for the probe instead of reporting:
    the sink is back, the probe closes the circuit and the batch goes on, with no operator."""
    clock, sink = FakeClock(), Sink()
    handler = make(sink, "hard-fail", clock, failures=3, retries=2)
    sink.down = True
    records = user_records(4)
    handler(event_of(records), clock.context(10_000))
    assert stored()["state"] == "OPEN"
    sink.down = False  # the sink recovers; nobody tells the consumer
    opened = float(stored()["opened_at"])
    out = handler(event_of(records), clock.context(60_000))
    assert out == {"batchItemFailures": []}
    assert handler.loop.last_batch.handled == 4
    assert clock.now - opened >= PROBE_S  # it waited for the probe (simulated time)
    assert sink.calls[3:] == seqs(records)  # the probe was the first record; then the rest
    assert stored()["state"] == "CLOSED"
    logged = capsys.readouterr().out
    assert transitions(logged) == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]
    assert metrics(logged) == ["circuit_opened", "circuit_half_open", "circuit_closed"]


def test_a_failed_probe_reopens_for_another_interval(circuits, capsys):
    clock, sink = FakeClock(), Sink()
    handler = make(sink, "hard-fail", clock, failures=2, retries=0)
    sink.down = True
    records = user_records(3)
    handler(event_of(records), clock.context(10_000))
    handler(event_of(records), clock.context(10_000))  # opens on the second failure
    assert len(sink.calls) == 2 and stored()["state"] == "OPEN"
    first_open = float(stored()["opened_at"])
    # 70 s of invocation: two probes fit (30 s, 60 s), both fail; then the deadline comes first
    out = handler(event_of(records), clock.context(70_000))
    assert len(sink.calls) == 4  # one probe per interval, nothing else
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == seqs(records)
    assert stored()["state"] == "OPEN" and float(stored()["opened_at"]) >= first_open + 2 * PROBE_S
    assert transitions(capsys.readouterr().out)[-2:] == [("OPEN", "HALF_OPEN"), ("HALF_OPEN", "OPEN")]


def test_one_probe_at_a_time_across_execution_environments(circuits):
    """Two execution environments of one consumer share the state: while A's probe is in
    flight, B (its own breaker, its own cache) does not call the sink; after A's probe
    succeeds, B goes through again."""
    clock, sink = FakeClock(), Sink()
    a = make(sink, "hard-fail", clock, failures=2, retries=0)
    b = make(sink, "hard-fail", clock, failures=2, retries=0)
    sink.down = True
    records = user_records(2)
    a(event_of(records[:1]), clock.context(10_000))
    a(event_of(records[:1]), clock.context(10_000))
    assert stored()["state"] == "OPEN"
    clock.advance(PROBE_S)
    sink.down = False
    seen_by_b = []

    def b_meanwhile():
        sink.during_call = None
        seen_by_b.append(stored()["state"])
        out = b(event_of(records[1:]), clock.context(10_000))  # 10 s: B cannot wait for a probe
        seen_by_b.append(out)

    sink.during_call = b_meanwhile
    out = a(event_of(records[:1]), clock.context(10_000))
    assert out == {"batchItemFailures": []}
    assert seen_by_b[0] == "HALF_OPEN"
    assert seen_by_b[1] == {"batchItemFailures": [{"itemIdentifier": seqs(records)[1]}]}
    assert sink.calls.count(seqs(records)[1]) == 0  # B never reached the sink during A's probe
    assert stored()["state"] == "CLOSED"
    clock.advance(5)  # B's cached view expires
    assert b(event_of(records[1:]), clock.context(10_000)) == {"batchItemFailures": []}
    assert sink.calls.count(seqs(records)[1]) == 1


def test_permanent_errors_are_answers_and_reset_the_count(circuits):
    """A 4xx means the sink is up: it breaks a run of transient failures."""
    clock = FakeClock()
    outcomes = iter([TransientError("503"), TransientError("503"), PermanentError("400"), TransientError("503"),
                     TransientError("503"), None])
    calls = []

    def flaky(record):
        calls.append(record.sequence_number)
        exc = next(outcomes)
        if exc is not None:
            raise exc

    handler = make(flaky, "soft-fail", clock, failures=3, retries=0)
    handler(event_of(user_records(6)), clock.context(10_000))
    assert len(calls) == 6 and stored() == {}  # never opened: no item was ever written


def test_unreadable_state_fails_open(aws, quiet_env, monkeypatch, capsys):
    """A breaker that cannot read its table must not stop a healthy sink."""
    monkeypatch.setenv("CIRCUIT_TABLE", "no-such-table")
    clock, sink = FakeClock(), Sink()
    handler = make(sink, "hard-fail", clock)
    records = user_records(3)
    assert handler(event_of(records), clock.context(10_000)) == {"batchItemFailures": []}
    assert sink.calls == seqs(records)
    assert any(e.get("event") == "circuit_state_unreadable" for e in lines(capsys.readouterr().out))


def test_breaker_settings_are_checked_at_cold_start(quiet_env, monkeypatch):
    monkeypatch.delenv("CIRCUIT_TABLE", raising=False)
    with pytest.raises(ConfigError, match="CIRCUIT_TABLE is not set when CIRCUIT_FAILURES > 0"):
        stream_handler("c", Sink(), policy="hard-fail", env={"CIRCUIT_FAILURES": "5"})
    with pytest.raises(ConfigError, match="CIRCUIT_PROBE_S='0'"):
        stream_handler("c", Sink(), policy="hard-fail", env={"CIRCUIT_FAILURES": "5", "CIRCUIT_TABLE": "t",
                                                              "CIRCUIT_PROBE_S": "0"})
    handler = stream_handler("c", Sink(), policy="hard-fail", env={})
    assert handler.loop.breaker is None  # no breaker unless asked for
    b = stream_handler("c", Sink(), policy="hard-fail", env={"CIRCUIT_FAILURES": "5", "CIRCUIT_TABLE": "t"}).loop.breaker
    assert isinstance(b, CircuitBreaker) and (b.failures, b.probe_s, b.table) == (5, 30.0, "t")


def test_without_a_deadline_an_open_circuit_is_reported_at_once(circuits):
    """No Lambda context (a script calling the handler): nothing to wait within, so the
    record and the rest are reported at once instead of waiting for a probe forever."""
    clock, sink = FakeClock(), Sink()
    handler = make(sink, "hard-fail", clock, failures=1, retries=0)
    sink.down = True
    records = user_records(2)
    start = clock.now
    assert [f["itemIdentifier"] for f in handler(event_of(records))["batchItemFailures"]] == seqs(records)
    assert clock.now == start and len(sink.calls) == 1


# ---- what an operator sees of an open circuit: ledger, metric, API (issues 12 and 14) ----------

def ledger_item(consumer: str, item_id: str) -> dict:
    from streamkit.ledger import from_item

    raw = boto3.client("dynamodb").get_item(TableName="failure-ledger", Key={
        "consumer": {"S": consumer}, "id": {"S": item_id}}, ConsistentRead=True).get("Item")
    return from_item(raw) if raw else {}


def emf_counts(out: str, consumer: str, name: str) -> list[float]:
    return [e[name][0] for e in lines(out) if "_aws" in e and e.get("consumer") == consumer and name in e]


@pytest.fixture
def api(circuits, ledger_table, monkeypatch, tmp_path):
    """The operator API over the same moto state; ``api(clock)`` a client whose caches run on
    the test's clock."""
    from opsapi import create_app

    monkeypatch.setenv("LOCAL_ESM_STATE", str(tmp_path / "no-esm.json"))
    for var in ("CRM_SYNC_FAILURE_POLICY", "SLACK_NOTIFIER_FAILURE_POLICY", "SEARCH_INDEXER_FAILURE_POLICY"):
        monkeypatch.delenv(var, raising=False)

    def client(clock: FakeClock):
        app = create_app({"LEDGER_TTL_S": 0, "CIRCUIT_TABLE": circuits, "CLOCK": clock.monotonic})
        app.testing = True
        return app.test_client()

    return client


def test_an_open_circuit_blocks_in_the_ledger_counts_in_emf_and_shows_in_the_api_until_it_closes(api, capsys):
    """A CRM outage opens crm-sync's (hard-fail) circuit. Each invocation that meets it writes
    the blocking record the page's "blocked" badge reads (its error: the open circuit and the
    sink failure that opened it), counts the records it kept from the sink (circuit_open, the
    alarm's metric), and the API shows the circuit open with its next probe. The sink comes
    back: the probe closes it, the blocking record is resolved, the API says closed."""
    import time

    clock, sink = FakeClock(time.time()), Sink()  # wall-clock based: the API reads the state's times
    handler = make(sink, "hard-fail", clock, failures=3, retries=2, name="crm-sync")
    client = api(clock)
    sink.down = True
    records = user_records(5)
    out = handler(event_of(records), clock.context(10_000))  # the third try opens it; 10 s < the probe: reported
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == seqs(records)
    conserved(handler, 5)
    logged = capsys.readouterr().out
    assert emf_counts(logged, "crm-sync", "circuit_opened") == [1.0]
    assert emf_counts(logged, "crm-sync", "circuit_open") == [5.0]  # every record of the batch kept from the sink
    blocking = ledger_item("crm-sync", f"b#{seqs(records)[0]}")
    assert blocking["state"] == "blocked" and blocking["kind"] == "blocking" and blocking["attempts"] == 1
    assert blocking["errorType"] == "CircuitOpenError"
    assert "the sink's circuit is open" in blocking["errorMessage"] and "503" in blocking["errorMessage"]

    clock.advance(5)  # the retry of the batch: the sink is not called, the ledger counts one more invocation
    handler(event_of(records), clock.context(10_000))
    assert len(sink.calls) == 3
    assert emf_counts(capsys.readouterr().out, "crm-sync", "circuit_open") == [5.0]
    assert ledger_item("crm-sync", f"b#{seqs(records)[0]}")["attempts"] == 2

    body = client.get("/consumers/crm-sync").get_json()
    circuit = body["circuit"]
    assert circuit["state"] == "open" and circuit["table"] == "circuits" and "error" not in circuit
    assert "3 consecutive transient failures" in circuit["reason"] and circuit["probeEverySeconds"] == PROBE_S
    assert circuit["nextProbeAt"] and 0 < circuit["nextProbeInSeconds"] <= PROBE_S and not circuit["probeOverdue"]
    assert "the shard waits" in circuit["whileOpen"] and "nothing is skipped" in circuit["whileOpen"]
    assert body["status"]["badge"] == "blocked"
    assert any(r.startswith("sink circuit open since") for r in body["status"]["reasons"])
    assert body["blocking"]["state"] == "blocked" and body["blocking"]["errorType"] == "CircuitOpenError"
    assert body["blocking"]["attempts"] == 2

    sink.down = False  # the CRM is back; the next invocation has time for the probe
    out = handler(event_of(records), clock.context(60_000))
    assert out == {"batchItemFailures": []} and handler.loop.last_batch.handled == 5
    assert emf_counts(capsys.readouterr().out, "crm-sync", "circuit_open") == []  # nothing kept from the sink
    assert stored("crm-sync")["state"] == "CLOSED"
    resolved = ledger_item("crm-sync", f"b#{seqs(records)[0]}")
    assert resolved["state"] == "resolved" and resolved["resolution"] == "handled"
    clock.advance(10)  # past the API's cache
    body = client.get("/consumers/crm-sync").get_json()
    assert body["circuit"]["state"] == "closed" and body["circuit"]["since"]
    assert body["status"]["badge"] != "blocked"
    assert not [r for r in body["status"]["reasons"] if "circuit" in r]
    assert body["blocking"]["state"] == "resolved"


def test_dlq_capture_records_the_record_its_shard_waits_on_and_not_a_capture(api, queue_url, monkeypatch, capsys):
    """search-indexer (dlq-capture): what failed before the circuit opened is captured (ledger
    items, state captured); from the opening failure on the shard waits, and the ledger says
    which record it waits on, as for hard-fail; the probe's success resolves it."""
    import time

    monkeypatch.setenv("FAILURE_QUEUE_URL", queue_url)
    clock, sink = FakeClock(time.time()), Sink()
    handler = make(sink, "dlq-capture", clock, failures=3, retries=0, name="search-indexer")
    client = api(clock)
    sink.down = True
    records = user_records(6)
    out = handler(event_of(records), clock.context(10_000))
    assert [f["itemIdentifier"] for f in out["batchItemFailures"]] == seqs(records)[2:]
    conserved(handler, 6)
    assert len(take_all(queue_url)) == 2
    assert emf_counts(capsys.readouterr().out, "search-indexer", "circuit_open") == [4.0]
    blocking = ledger_item("search-indexer", f"b#{seqs(records)[2]}")
    assert blocking["state"] == "blocked" and blocking["errorType"] == "CircuitOpenError"
    body = client.get("/consumers/search-indexer").get_json()
    assert body["circuit"]["state"] == "open" and "not captured" in body["circuit"]["whileOpen"]
    assert body["status"]["badge"] == "blocked" and body["ledger"]["open"] == 2  # the two captures, still open

    sink.down = False
    assert handler(event_of(records[2:]), clock.context(60_000)) == {"batchItemFailures": []}
    assert ledger_item("search-indexer", f"b#{seqs(records)[2]}")["state"] == "resolved"
    assert take_all(queue_url) == []  # nothing more was captured
    clock.advance(10)
    assert client.get("/consumers/search-indexer").get_json()["circuit"]["state"] == "closed"


def test_soft_fail_drops_while_open_and_the_api_says_dropping(api, capsys):
    import time

    clock, sink = FakeClock(time.time()), Sink()
    handler = make(sink, "soft-fail", clock, failures=2, retries=0, name="slack-notifier")
    client = api(clock)
    sink.down = True
    handler(event_of(user_records(6)), clock.context(60_000))
    assert handler.loop.last_batch.dropped == 6 and len(sink.calls) == 2
    # the record whose failure opened it and the four never sent: dropped by the open circuit
    assert emf_counts(capsys.readouterr().out, "slack-notifier", "circuit_open") == [5.0]
    body = client.get("/consumers/slack-notifier").get_json()
    assert body["circuit"]["state"] == "open" and "dropped without calling the sink" in body["circuit"]["whileOpen"]
    assert body["status"]["badge"] == "dropping"
    assert any(r.startswith("sink circuit open") and "dropped" in r for r in body["status"]["reasons"])


def test_the_api_states_an_unreadable_a_stale_and_an_absent_circuit(api, monkeypatch):
    import time

    from opsapi.circuits import describe

    clock = FakeClock(time.time())
    body = api(clock).get("/consumers/crm-sync").get_json()
    assert body["circuit"]["state"] == "closed" and body["circuit"]["note"] == "never opened"
    # an open circuit whose probe is long overdue: nobody has invoked since; said, and not "blocked"
    opened = time.time() - 600
    stale = describe({"consumer": {"S": "crm-sync"}, "state": {"S": "OPEN"}, "opened_at": {"N": str(opened)},
                      "probe_s": {"N": "30"}, "open_reason": {"S": "5 consecutive transient failures"}}, "hard-fail")
    assert stale["probeOverdue"] and "none came" in stale["note"] and stale["sinceAgeSeconds"] >= 600
    from opsapi.health import derive

    verdict = derive("hard-fail", alarms={}, mapping={}, ledger={}, drops=None, failures={}, blocking=None,
                     circuit=stale)
    assert verdict["badge"] == "degraded" and "none came" in verdict["reasons"][0]
    # the table unreadable: unknown, with the error, never "closed"
    monkeypatch.setenv("CIRCUIT_TABLE", "no-such-table")
    from opsapi import create_app

    app = create_app({"LEDGER_TTL_S": 0, "CIRCUIT_TABLE": "no-such-table"})
    body = app.test_client().get("/consumers/crm-sync").get_json()
    assert body["circuit"]["state"] == "unknown" and "ResourceNotFoundException" in body["circuit"]["error"]
    assert any(u.startswith("circuit breaker state not readable") for u in body["status"]["unknown"])
