"""Fixtures for the reprocess tests: queues named by convention, tables, envelope builders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from streamkit.envelope import build_envelope, dumps, message_attributes
from streamkit.sqsbatch import send_batch
from streamkit.testing import make_record

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / "reprocess" / "reprocess.py")


@pytest.fixture
def env(aws, monkeypatch):
    """Clean naming environment: default service/stage, no queue URL overrides."""
    for var in list(os.environ):
        if var.endswith("_QUEUE_URL") or var in ("SERVICE_NAME", "STAGE", "USERS_TABLE", "FAILURE_QUEUE_URL"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RETRY_BASE_DELAY_MS", "0")
    from streamkit import idempotency

    idempotency.reset_client()
    return aws


def make_queues(consumer: str) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    failures = sqs.create_queue(QueueName=f"userstream-dev-{consumer}-failures")["QueueUrl"]
    parking = sqs.create_queue(QueueName=f"userstream-dev-{consumer}-parking")["QueueUrl"]
    return failures, parking


@pytest.fixture
def queues(env):
    return make_queues("search-indexer")


def make_table(name: str, key: str = "user_id") -> str:
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.fixture
def index_table(env, monkeypatch):
    monkeypatch.setenv("TEST_INDEX_TABLE", make_table("test-index"))
    return "test-index"


@pytest.fixture
def users_table(env, monkeypatch):
    monkeypatch.setenv("USERS_TABLE", make_table("users"))
    return "users"


def user(i: int, *, v2: bool = False, **extra) -> dict:
    item = {"user_id": f"u{i:04d}", "email": f"user{i}@example.com", "plan": "free"}
    if v2:
        item.update(firstname="Ada", lastname=f"Number{i}")
    else:
        item["fullname"] = f"Ada Number{i}"
    item.update(extra)
    return item


def insert(item: dict, **kw) -> dict:
    return make_record("INSERT", keys={"user_id": item["user_id"]}, new_image=item, **kw)


def envelope(record: dict, consumer: str = "search-indexer", *, error_type: str = "KeyError", attempts: int = 1, **kw) -> dict:
    return build_envelope(
        consumer=consumer,
        record=record,
        error={"type": error_type, "message": "'fullname'", "traceback": "Traceback ..."},
        attempts=attempts,
        function_name=f"userstream-dev-{consumer}",
        request_id="req-1",
        **kw,
    )


def send_bodies(queue_url: str, bodies: list[str], error_type: str = "KeyError", consumer: str = "search-indexer") -> None:
    messages = [
        {"Id": str(i), "MessageBody": b, "MessageAttributes": message_attributes(consumer, error_type)}
        for i, b in enumerate(bodies)
    ]
    assert send_batch(boto3.client("sqs"), queue_url, messages, max_batch_bytes=1_048_576) == []


def capture(queue_url: str, envelopes: list[dict]) -> None:
    send_bodies(queue_url, [dumps(e) for e in envelopes])


def take_all(queue_url: str) -> list[dict]:
    """Every message now in the queue (received and deleted): body (parsed if JSON) + attributes."""
    sqs = boto3.client("sqs")
    out = []
    for _ in range(200):
        msgs = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            try:
                body = json.loads(m["Body"])
            except ValueError:
                body = m["Body"]
            attrs = {k: v.get("StringValue") for k, v in (m.get("MessageAttributes") or {}).items()}
            out.append({"body": body, "raw": m["Body"], "attributes": attrs})
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
        )
    raise AssertionError("queue never emptied")


def depth(queue_url: str) -> int:
    a = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def index_items() -> dict[str, dict]:
    t = boto3.resource("dynamodb").Table(os.environ["TEST_INDEX_TABLE"])
    return {i["user_id"]: i for i in t.scan(ConsistentRead=True)["Items"]}


def run_cli(*args: str, extra_env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI as an operator runs it: a plain script path, against the moto server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
