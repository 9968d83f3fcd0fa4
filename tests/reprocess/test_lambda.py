"""The reprocess Lambda entry point (handlers/reprocess.py)."""
from __future__ import annotations

from handlers import reprocess as fn
from streamkit.testing import LambdaContext
from tests.support.aws import queue_count
from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item


def test_dry_run_returns_the_summary(queues):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    out = fn.handler({"consumer": "search-indexer", "dryRun": True}, LambdaContext(timeout_s=120))
    assert out["dry_run"] and out["taken"] == 3 and out["exit_code"] == 0
    assert out["by_error_type"] == {"KeyError": 3}
    assert queue_count(failures) == 3


def test_time_budget_comes_from_the_lambda_deadline(queues):
    failures, _ = queues
    capture(failures, [envelope(insert(user_item(i))) for i in range(3)])
    # less time left than the margin: nothing is taken, nothing is lost
    out = fn.handler({"consumer": "search-indexer", "dryRun": True}, LambdaContext(timeout_s=fn.MARGIN_MS / 1000 - 1))
    assert out["taken"] == 0 and out["stopped_by"] == "time budget used"
    assert queue_count(failures) == 3


def test_bad_events_say_why(queues):
    assert fn.handler({}, LambdaContext())["exit_code"] == 2
    out = fn.handler({"consumer": "nobody"}, LambdaContext())
    assert out["exit_code"] == 2 and "unknown consumer" in out["error"]
    out = fn.handler({"consumer": "search-indexer", "mode": "sideways"}, LambdaContext())
    assert out["exit_code"] == 2 and "mode" in out["error"]
