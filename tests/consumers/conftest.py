"""Fixtures for the consumer tests: the local vendor fakes, a search sink, the idempotency table."""
from __future__ import annotations

import pytest

from local.fakes import FakeCRM, FakeOpenSearch, FakeSlack
from streamkit import StreamRecord
from tests.support.aws import create_idempotency_table
from tests.support.users import user_item, user_record


@pytest.fixture(autouse=True)
def consumer_env(monkeypatch):
    """Each test starts with the fixed schema code, no secrets and no cached clients."""
    for var in ("USER_SCHEMA_MODE", "SLACK_WEBHOOK_URL", "SLACK_WEBHOOK_URL_PARAM", "CRM_TOKEN", "CRM_TOKEN_PARAM",
                "CRM_BASE_URL", "SEARCH_URL", "SEARCH_INDEX", "IDEMPOTENCY_TABLE", "FAILURE_POLICY",
                "FAILURE_QUEUE_URL", "FAILURE_BUCKET", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RETRY_BASE_DELAY_MS", "0")
    import consumers.crm_sync as crm
    import consumers.search_indexer as si
    import consumers.slack_notifier as sn
    import streamkit.idempotency as idem

    def reset():
        si._sinks.clear()
        sn._clients.clear()
        crm.applied_orders.reset()
        if crm._client is not None:
            crm._client.close()
        crm._client, crm._client_key = None, None
        idem.reset_client()

    reset()
    yield
    reset()


@pytest.fixture
def slack(monkeypatch):
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.webhook_url)
        yield fake


@pytest.fixture
def crm(monkeypatch, idempotency_table):
    """The fake CRM, and the table where crm-sync keeps the change_order it applied per user."""
    with FakeCRM(token="test-token") as fake:
        monkeypatch.setenv("CRM_BASE_URL", fake.url)
        monkeypatch.setenv("CRM_TOKEN", "test-token")
        yield fake


@pytest.fixture
def opensearch():
    with FakeOpenSearch() as fake:
        yield fake


@pytest.fixture(params=["sqlite", "opensearch"])
def search_sink(request, monkeypatch, tmp_path):
    """SEARCH_URL pointed at each sink in turn; yields the sink object."""
    import consumers.search_indexer as si

    if request.param == "sqlite":
        monkeypatch.setenv("SEARCH_URL", f"sqlite:///{tmp_path}/search.sqlite3")
        yield si.get_sink()
        si.get_sink().close()
    else:
        fake = FakeOpenSearch().start()
        monkeypatch.setenv("SEARCH_URL", fake.url)
        sink = si.get_sink()
        sink.fake = fake
        yield sink
        fake.stop()


@pytest.fixture
def idempotency_table(aws, monkeypatch):
    """The idempotency table as serverless.yml declares it: key ``id`` (S), TTL ``expires_at``."""
    monkeypatch.setenv("IDEMPOTENCY_TABLE", create_idempotency_table("idempotency"))
    return "idempotency"


# This suite's users: ``u1``, Ada Lovelace1 on the pro plan (v1), Grace Hopper1 on free (v2).
def v1_user(n: int, **extra) -> dict:
    return user_item(n, **{"width": 0, "last": "Lovelace", "plan": "pro", **extra})


def v2_user(n: int, **extra) -> dict:
    return user_item(n, **{"v2": True, "width": 0, "first": "Grace", "last": "Hopper", **extra})


T0 = 1_764_000_000  # a fixed creation time (epoch seconds): tests order changes explicitly


def rec(event: str, item: dict | None = None, *, old: dict | None = None, seq: str | None = None,
        event_id: str | None = None, user: str | None = None, at: float | None = None,
        source: str = "dynamodb") -> dict:
    """A Lambda-format record for a users-table item, from ``source`` (``dynamodb`` or
    ``kinesis``), made ``at`` seconds after ``T0`` (default: now)."""
    return user_record(event, item, old=old, user_id=user, sequence_number=seq, event_id=event_id,
                       created=None if at is None else T0 + at, source=source)


def sr(*args, **kwargs) -> StreamRecord:
    return StreamRecord(rec(*args, **kwargs))
