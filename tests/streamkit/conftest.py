import boto3
import pytest

from tests.support.aws import create_queue


@pytest.fixture
def queue_url(aws):
    return create_queue("search-indexer-failures")[0]


@pytest.fixture
def bucket(aws):
    boto3.client("s3").create_bucket(Bucket="claim-checks")
    return "claim-checks"


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock for streamkit.deadline (nothing else's time moves)."""
    import types

    from .helpers import FakeClock

    fake = FakeClock()
    monkeypatch.setattr("streamkit.deadline.time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.fixture
def quiet_env(monkeypatch):
    """No retry waits in tests; the policy comes from each test."""
    monkeypatch.setenv("RETRY_BASE_DELAY_MS", "0")
    monkeypatch.delenv("FAILURE_POLICY", raising=False)
    monkeypatch.delenv("FAILURE_QUEUE_URL", raising=False)
    monkeypatch.delenv("FAILURE_BUCKET", raising=False)

