"""Fixtures for the operator API tests: queues named by the registry, real envelopes in them."""
from __future__ import annotations

import os

import pytest

from tests.support.failures import capture, envelope
from tests.support.users import insert, user_item

SLACK_SECRET = "https://hooks.slack.example/services/T000/B000/s3cr3tWebhookValue"
CRM_SECRET = "crm-token-0123456789abcdef"


@pytest.fixture
def env(aws, ledger_table, monkeypatch, tmp_path):
    """Clean naming environment, a sqlite search sink, secrets that must never be echoed."""
    for var in list(os.environ):
        if var.endswith(("_QUEUE_URL", "_FUNCTION_NAME")) or var in (
            "SERVICE_NAME", "STAGE", "USERS_TABLE", "FAILURE_QUEUE_URL", "REPROCESS_FUNCTION_NAME", "SEARCH_URL",
        ):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RETRY_BASE_DELAY_MS", "0")
    monkeypatch.setenv("SEARCH_URL", f"sqlite:///{tmp_path}/search.db")
    monkeypatch.setenv("LOCAL_ESM_STATE", str(tmp_path / "esm.json"))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", SLACK_SECRET)
    monkeypatch.setenv("CRM_TOKEN", CRM_SECRET)
    from streamkit import idempotency

    idempotency.reset_client()
    return aws


def put_failures(queue_url: str, consumer: str, n: int, *, error_type: str = "KeyError",
                 message: str = "'fullname'", start: int = 0, captured_at: str | None = None) -> list[dict]:
    """Send ``n`` real failure envelopes (INSERT records of v1 users) to ``queue_url``."""
    records = [insert(user_item(i)) for i in range(start, start + n)]
    capture(queue_url, [envelope(r, consumer, error_type=error_type, message=message, captured_at=captured_at)
                        for r in records])
    return records


def capture_failures(queue_url: str, consumer: str, n: int, *, error_type: str = "KeyError",
                     message: str = "'fullname'", start: int = 0) -> list[dict]:
    """``n`` records failing with ``error_type: message`` on the real stream path (dlq-capture):
    envelopes in the queue and, with LEDGER_TABLE set, one ledger item each."""
    from streamkit import DlqCapture, stream_handler

    error = type(error_type, (Exception,), {})

    def fails(record):
        raise error(message)

    records = [insert(user_item(i)) for i in range(start, start + n)]
    handler = stream_handler(consumer, fails, policy=DlqCapture(queue_url=queue_url), metrics=False)
    assert handler({"Records": records})["batchItemFailures"] == []
    return records


@pytest.fixture
def app(env):
    from opsapi import create_app

    app = create_app({"LEDGER_TTL_S": 0, "DRAIN_OPTIONS": {"wait_time_s": 0}})
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def incident(env, ledger_table, tmp_path):
    """The schema-change incident (``tests/opsapi/incident.py``), its state file where the API reads it."""
    from .incident import Incident

    return Incident(tmp_path / "esm.json", ledger_table)
