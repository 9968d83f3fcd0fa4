"""A 10-minute CRM outage under crm-sync's circuit breaker (issue 14, item 5), end to end.

The real crm-sync handler (``handlers/crm_sync.py``), cold-started with serverless.yml's
settings for it (policy, circuit breaker, batch size, retry budget, record age, timeout), is
fed by the event-source-mapping emulator from a real moto stream; the real fake CRM answers
503 for ten minutes of simulated time, then recovers. Time is one ``SimClock`` for the
emulator (batching, retry backoffs), the function's deadline and waits, and the breaker.

With the breaker: nothing goes to the on-failure destination (no captures), no record is
skipped, every invocation accounts for every record, the CRM is hardly called while down,
and the consumer resumes by itself. Without it (the same outage, ``CIRCUIT_FAILURES=0``):
Lambda's retries of the blocked batch run out and records are skipped, which is the point.
"""
from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import boto3
import pytest
import yaml

from local.esm import Emulator, MappingConfig
from local.functions import FunctionConfig, FunctionRuntime, applied_env
from streamkit import StreamRecord
from tests.support.aws import SERVERLESS_YML, create_circuit_table, create_queue, create_users_table
from tests.support.users import put_users, user_item

OUTAGE_S = 600
USERS = 30


@functools.cache
def crm_sync_block() -> dict:
    return yaml.safe_load(SERVERLESS_YML.read_text())["custom"]["streamConsumers"]["crm-sync"]


class SimClock:
    """Simulated wall time; the CRM comes back once it passes ``recover_at``."""

    def __init__(self, crm: Any, recover_at: float):
        self.t = time.time()
        self.crm, self.recover_at = crm, recover_at

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        if self.t >= self.recover_at and self.crm.faults:
            with self.crm.lock:
                self.crm.faults.clear()


class SimContext:
    def __init__(self, clock: SimClock, name: str, timeout_s: float):
        self.clock, self.end = clock, clock.now() + timeout_s
        self.function_name, self.aws_request_id = name, str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.end - self.clock.now()) * 1000))


class SimFunction(FunctionRuntime):
    """crm-sync as Lambda runs it, in simulated time; checks every invocation's accounting."""

    def __init__(self, config: FunctionConfig, clock: SimClock):
        super().__init__(config)
        self.clock = clock
        self.batches: list[tuple[list[str], Any, dict]] = []
        self.elapsed: list[float] = []  # simulated seconds each invocation took

    def invoke(self, event: dict) -> Any:
        if self._handler is None:
            self._handler = self._cold_start()
            loop = self._handler.loop
            loop.clock, loop.sleep = self.clock.now, self.clock.sleep
            if loop.breaker is not None:
                loop.breaker.clock = self.clock.now
        context = SimContext(self.clock, self.config.name, self.config.timeout_s)
        started = self.clock.now()
        with applied_env(self.config.environment):
            response = self._handler(event, context)
        self.elapsed.append(self.clock.now() - started)
        seqs = [StreamRecord(r).sequence_number for r in event["Records"]]
        self.batches.append((seqs, self._handler.loop.last_batch, response))
        return response


def run_outage(crm, monkeypatch, *, breaker: bool) -> dict:
    block = crm_sync_block()
    stream = create_users_table("users")
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")  # the crm fixture made it
    on_failure_url, on_failure_arn = create_queue("crm-sync-failures")
    env = {**block["environment"], "FAILURE_POLICY": block["policy"], "CRM_BASE_URL": crm.url,
           "CRM_TOKEN": "test-token", "CRM_TIMEOUT_S": "0.5", "IDEMPOTENCY_TABLE": "idempotency"}
    del env["CRM_TOKEN_PARAM"]
    if breaker:
        cb = block["circuitBreaker"]  # what the plugin turns into the function's environment
        env.update(CIRCUIT_TABLE=create_circuit_table("circuits"), CIRCUIT_FAILURES=str(cb["failures"]),
                   CIRCUIT_PROBE_S=str(cb["probeSeconds"]))
    clock = SimClock(crm, recover_at=0)
    clock.recover_at = clock.now() + OUTAGE_S
    fn = SimFunction(FunctionConfig("crm-sync", "handlers/crm_sync.handler", env, timeout_s=float(block["timeout"])),
                     clock)
    mapping = MappingConfig(
        name="CrmSyncMapping", function="crm-sync", stream_arn=stream, starting_position="TRIM_HORIZON",
        batch_size=int(block["batchSize"]), report_batch_item_failures=True, bisect_on_error=True,  # hard-fail
        max_retry_attempts=int(block["maximumRetryAttempts"]), max_record_age_s=int(block["maximumRecordAgeInSeconds"]),
        on_failure_arn=on_failure_arn)
    crm.fail(503, {"status": "error", "message": "maintenance", "category": "UNAVAILABLE"}, times=1_000_000)
    items = [user_item(i, width=2) for i in range(USERS)]
    put_users(items, "users")
    em = Emulator([mapping], {"crm-sync": fn}, clock=clock.now, sleep=clock.sleep, retry_backoff_s=0.5,
                  max_backoff_s=5.0, state_path=None)
    report = em.run_until_idle(stall_after=10_000, max_rounds=5_000)
    (m,) = em.mappings
    on_failure = boto3.client("sqs").receive_message(QueueUrl=on_failure_url, MaxNumberOfMessages=10).get("Messages", [])
    return {"report": report, "mapping": m, "fn": fn, "on_failure": on_failure, "requests": len(crm.requests),
            "emails": sorted(i["email"] for i in items),
            "clock": clock}


def test_a_ten_minute_crm_outage_loses_nothing_and_resumes_by_itself(crm, monkeypatch):
    out = run_outage(crm, monkeypatch, breaker=True)
    m, fn = out["mapping"], out["fn"]
    assert out["report"].caught_up == ["crm-sync"]
    assert out["clock"].now() >= out["clock"].recover_at  # the outage really lasted its ten minutes
    # no captures: Lambda never gave up on a batch, so nothing went to the on-failure destination
    assert out["on_failure"] == [] and m.counters.discarded == 0
    # no skipped record: every user is a contact, once
    emails = sorted(c["properties"]["email"] for c in crm.active())
    assert emails == out["emails"] and len(emails) == USERS
    # every invocation accounted for each of its records (hard-fail: handled or reported, never dropped)
    for seqs, batch, response in fn.batches:
        assert batch.handled + len(batch.reported) == len(seqs) and batch.captured == batch.dropped == 0
        assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [seqs[i] for i in sorted(batch.reported)]
    # it stopped calling the CRM: about one probe per 30 s interval, not a retry storm
    assert out["requests"] <= USERS + OUTAGE_S // 30 + 10
    # the shard waited inside few invocations, none past the function's timeout
    assert max(fn.elapsed) <= fn.config.timeout_s and m.counters.invocations < 30
    state = boto3.client("dynamodb").get_item(TableName="circuits", Key={"consumer": {"S": "crm-sync"}})["Item"]
    assert state["state"]["S"] == "CLOSED"


def test_without_the_breaker_the_same_outage_skips_records(crm, monkeypatch):
    """The control: the same outage with the breaker off uses up MaximumRetryAttempts while the
    CRM is down, and Lambda skips the batch (its metadata goes to the on-failure queue)."""
    out = run_outage(crm, monkeypatch, breaker=False)
    assert out["on_failure"] and out["mapping"].counters.discarded > 0
    assert len(crm.active()) < USERS


pytestmark = pytest.mark.usefixtures("idempotency_table")
