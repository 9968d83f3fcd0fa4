"""Hard-fail names the failed record and what follows it in batchItemFailures; Lambda (here: the local
event-source-mapping emulator, which checkpoints before the lowest reported sequence number
as Lambda does) resumes exactly there: nothing before it runs twice, nothing after it is
skipped, and the shard blocks until the record succeeds."""
from __future__ import annotations

from local.functions import FunctionConfig, FunctionRuntime
from tests.local import recorder

from .test_esm import calls_of, emulator, put_users, stream  # noqa: F401  (fixture)


def _function(name: str, **env) -> FunctionRuntime:
    return FunctionRuntime(FunctionConfig(name, "tests/local/fn_streamkit.handler",
                                          {"FN_NAME": name, "FAILURE_POLICY": "hard-fail", **env}, timeout_s=30))


def test_hard_fail_resumes_at_the_failed_record_and_skips_nothing(stream):  # noqa: F811
    recorder.handled.clear()
    recorder.calls.clear()
    recorder.responses.clear()
    users = put_users(12)
    fn = _function("crm", BAD_USERS="u004")
    em = emulator(stream, {"function": "crm", "batch_size": 5, "report_batch_item_failures": True,
                           "max_retry_attempts": -1}, functions=[fn])
    report = em.run_until_idle(stall_after=3)
    assert report.stalled == ["crm"]  # blocked on u004, retried from it, never past it
    assert [u for n, u in recorder.handled if n == "crm"] == users[:4]
    first, *retries = [batch for _, batch in calls_of("crm")]
    assert first == users[:5] and retries and all(batch[0] == "u004" for batch in retries)
    seq_u004 = calls_of("crm")[0][0][4]
    # What the function answered each time: the failed record first, then the rest of its batch.
    answers = [r["batchItemFailures"] for n, r in recorder.responses if n == "crm"]
    assert answers and all(a[0] == {"itemIdentifier": seq_u004} for a in answers)
    batches = [batch for _, batch in calls_of("crm")]
    assert all(len(a) == len(b) - b.index("u004") for a, b in zip(answers, batches, strict=True))
    m = em.mapping("crm")
    assert m.counters.discarded == 0 and m.counters.succeeded == 4  # u000-u003 checkpointed
    # The fix is deployed: the shard resumes at u004; u000-u003 are never delivered again.
    em.redeploy("crm", {"BAD_USERS": ""})
    assert em.run_until_idle().ok
    assert [u for n, u in recorder.handled if n == "crm"] == users  # each exactly once, in order
    after_fix = [batch for _, batch in calls_of("crm")][1 + len(retries):]
    assert after_fix[0][0] == "u004" and [u for b in after_fix for u in b] == users[4:]
    assert m.counters.succeeded == 12 and m.counters.discarded == 0
