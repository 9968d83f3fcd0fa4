"""Shared fixtures: one embedded AWS for the session, reset before each test that uses it
(helpers for it in ``tests/support``)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Never reach real AWS from a test, whatever the developer's shell has.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ["AWS_REGION"] = "us-east-1"
os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "StreamKitTests")


@pytest.fixture(autouse=True)
def no_secrets_remembered():
    """Each test starts from a process that has read no secret (``streamkit.redact``): a value
    one test registered must not be redacted from another test's messages."""
    yield
    from streamkit.redact import forget_secrets

    forget_secrets()


@pytest.fixture(scope="session")
def embedded_aws():
    """The local runtime's embedded AWS (moto, server mode) for the whole session. Only tests
    that ask for ``aws`` are pointed at it (``AWS_ENDPOINT_URL``), each with a fresh state."""
    from local.aws import EmbeddedAws

    server = EmbeddedAws().start(export_endpoint=False)
    yield server
    server.stop()


@pytest.fixture
def aws(embedded_aws, monkeypatch):
    """Fresh moto state, AWS_ENDPOINT_URL pointed at it. Yields the endpoint URL. Tables,
    queues and users for it: ``tests.support``."""
    embedded_aws.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", embedded_aws.url)
    yield embedded_aws.url


@pytest.fixture(params=["dynamodb", "kinesis"])
def source(request):
    """Run a test on both sources: DynamoDB Streams records and Kinesis Data Streams for
    DynamoDB records (one StreamRecord API, contract 7). Builders take ``source=``."""
    return request.param


@pytest.fixture
def ledger_table(aws, monkeypatch):
    """A failure ledger on moto, named in ``LEDGER_TABLE`` for the code under test."""
    from tests.support.aws import create_ledger_table

    name = create_ledger_table()
    monkeypatch.setenv("LEDGER_TABLE", name)
    return name
