"""The CLI as an operator runs it: `python reprocess/reprocess.py ...` in a subprocess,
against the moto server through AWS_ENDPOINT_URL."""
from __future__ import annotations

import json

from tests.support.aws import queue_count, take_all
from tests.support.failures import capture, envelope, send_bodies
from tests.support.users import insert, user_item

from .conftest import index_items, run_cli

V1 = "tests.reprocess.sample_consumers:index_v1"
V2 = "tests.reprocess.sample_consumers:index_v2"
FAILS = "tests.reprocess.sample_consumers:always_fails"


def test_drain_after_fix(queues, index_table):
    failures, parking = queues
    records = [insert(user_item(i, v2=True)) for i in range(20)]
    capture(failures, [envelope(r) for r in records])

    before = run_cli("--consumer", "search-indexer", "--mode", "replay", "--handler", V1, "--json", "--wait-seconds", "0")
    assert before.returncode == 1, before.stderr
    s = json.loads(before.stdout)
    assert (s["taken"], s["succeeded"], s["still_failing"], s["parked"]) == (20, 0, 20, 0)
    assert s["by_error_type"] == {"KeyError": 20}
    left = take_all(failures)
    assert sorted(m["body"]["record"]["eventID"] for m in left) == sorted(r["eventID"] for r in records)
    assert {m["body"]["attempts"] for m in left} == {2}
    capture(failures, [m["body"] for m in left])  # put them back for the fixed code

    after = run_cli("--consumer", "search-indexer", "--mode", "replay", "--handler", V2, "--json", "--wait-seconds", "0")
    assert after.returncode == 0, after.stderr
    s = json.loads(after.stdout)
    assert (s["taken"], s["succeeded"], s["still_failing"], s["parked"]) == (20, 20, 0, 0)
    assert queue_count(failures) == 0 and queue_count(parking) == 0
    items = index_items()
    assert {items[f"u{i:04d}"]["name"] for i in range(20)} == {f"Ada Number{i}" for i in range(20)}


def test_everything_failing_terminates_with_exit_1_and_loses_nothing(queues, index_table):
    failures, parking = queues
    records = [insert(user_item(i)) for i in range(25)]
    capture(failures, [envelope(r) for r in records])

    out = run_cli("--consumer", "search-indexer", "--mode", "replay", "--handler", FAILS, "--json", "--wait-seconds", "1")
    assert out.returncode == 1, out.stderr
    s = json.loads(out.stdout)
    assert s["taken"] == 25 == s["succeeded"] + s["still_failing"] + s["parked"]
    assert s["still_failing"] == 25 and s["by_error_type"] == {"ValueError": 25}
    # the re-sent copies were received again in this run and left alone, then the run ended
    assert "already tried" in s["stopped_by"] or s["stopped_by"] == "queue empty"
    left = take_all(failures)
    assert len(left) == 25 and queue_count(parking) == 0
    assert sorted(m["body"]["record"]["eventID"] for m in left) == sorted(r["eventID"] for r in records)
    for m in left:
        assert m["body"]["attempts"] == 2
        assert m["body"]["error"]["type"] == "ValueError" and "still broken" in m["body"]["error"]["message"]
        assert m["attributes"]["errorType"] == "ValueError"


def test_dry_run_counts_without_changing_anything(queues):
    failures, parking = queues
    envs = [envelope(insert(user_item(i)), error_type="KeyError", captured_at=f"2026-11-0{1 + i % 5}T00:00:00.000Z")
            for i in range(7)]
    envs += [envelope(insert(user_item(i)), error_type="TimeoutError", captured_at="2026-11-09T12:00:00.000Z")
             for i in range(7, 10)]
    capture(failures, envs)
    send_bodies(failures, ["not json at all"])

    out = run_cli("--consumer", "search-indexer", "--dry-run", "--json", "--wait-seconds", "0")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["dry_run"] and s["taken"] == 11
    assert s["by_error_type"] == {"KeyError": 7, "TimeoutError": 3, "malformed": 1}
    assert s["oldest"] == "2026-11-01T00:00:00.000Z"
    # the malformed message has no capturedAt: its SentTimestamp (just now) is the newest
    assert s["newest"] > "2026-11-09T12:00:00.000Z"
    assert s["succeeded"] == s["still_failing"] == s["parked"] == 0
    # nothing changed, and everything is visible again right away
    left = take_all(failures)
    assert sorted(m["raw"] for m in left) == sorted([json.dumps(e, separators=(",", ":")) for e in envs] + ["not json at all"])
    assert queue_count(parking) == 0


def test_text_summary(queues, index_table):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(1)))])
    out = run_cli("--consumer", "search-indexer", "--mode", "replay", "--handler", V2, "--wait-seconds", "0")
    assert out.returncode == 0, out.stderr
    assert "succeeded       1" in out.stdout and "stopped" in out.stdout


def test_bad_usage_and_configuration_exit_2(queues, monkeypatch):
    assert run_cli("--consumer", "no-such-consumer").returncode == 2
    assert run_cli().returncode == 2  # --consumer is required
    assert run_cli("--consumer", "search-indexer", "--mode", "sideways").returncode == 2
    missing = run_cli("--consumer", "crm-sync", "--mode", "replay", "--handler", V2)  # no crm-sync queue
    assert missing.returncode == 2 and "userstream-dev-crm-sync-failures" in missing.stderr
    latest = run_cli("--consumer", "search-indexer", "--handler", V2)  # latest mode, no USERS_TABLE
    assert latest.returncode == 2 and "USERS_TABLE" in latest.stderr
    bad_handler = run_cli("--consumer", "search-indexer", "--mode", "replay", "--handler", "nope")
    assert bad_handler.returncode == 2


def test_a_configuration_error_stops_the_drain_with_exit_2_and_leaves_every_message_as_it_was(queues):
    """search-indexer's real handle_record raises ConfigError on a SEARCH_URL it cannot use: no
    record's failure. The drain stops at once with exit 2 naming the setting; nothing is re-sent
    (which would spend the messages' attempts toward parking) or parked: every message is back
    in the queue, visible, as it was (attempts 1)."""
    failures, parking = queues
    records = [insert(user_item(i, v2=True)) for i in range(12)]
    capture(failures, [envelope(r) for r in records])
    out = run_cli("--consumer", "search-indexer", "--mode", "replay", "--json", "--wait-seconds", "0",
                  extra_env={"SEARCH_URL": "ftp://index.example"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "reprocess: error: handle_record raised ConfigError" in out.stderr
    assert "SEARCH_URL='ftp://index.example'" in out.stderr
    s = json.loads(out.stdout)
    assert s["exit_code"] == 2 and "SEARCH_URL" in s["config_error"]
    assert (s["taken"], s["succeeded"], s["still_failing"], s["parked"], s["resent"]) == (0, 0, 0, 0, 0)
    assert s["stopped_by"].startswith("configuration error")
    left = take_all(failures)
    assert sorted(m["body"]["record"]["eventID"] for m in left) == sorted(r["eventID"] for r in records)
    assert {m["body"]["attempts"] for m in left} == {1}
    assert queue_count(parking) == 0
