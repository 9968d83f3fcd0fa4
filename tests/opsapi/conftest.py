"""Fixtures for the operator API tests: queues named by the registry, real envelopes in them."""
from __future__ import annotations

import os

import boto3
import pytest

from consumers.registry import get_consumer
from streamkit.envelope import build_envelope, dumps, message_attributes
from streamkit.testing import make_record

SLACK_SECRET = "https://hooks.slack.example/services/T000/B000/s3cr3tWebhookValue"
CRM_SECRET = "crm-token-0123456789abcdef"


@pytest.fixture
def env(aws, monkeypatch, tmp_path):
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


def make_queues(consumer: str, *, redrive_max: int | None = None) -> tuple[str, str]:
    c = get_consumer(consumer)
    sqs = boto3.client("sqs")
    parking = sqs.create_queue(QueueName=c.queue_name("parking"))["QueueUrl"]
    attrs = {}
    if redrive_max is not None:
        arn = sqs.get_queue_attributes(QueueUrl=parking, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        import json

        attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": redrive_max})
    failures = sqs.create_queue(QueueName=c.queue_name("failures"), Attributes=attrs)["QueueUrl"]
    return failures, parking


def user(i: int) -> dict:
    return {"user_id": f"u{i:04d}", "email": f"user{i}@example.com", "plan": "free", "fullname": f"Ada Number{i}"}


def put_failures(queue_url: str, consumer: str, n: int, *, error_type: str = "KeyError",
                 message: str = "'fullname'", start: int = 0, captured_at: str | None = None) -> list[dict]:
    """Send ``n`` real failure envelopes (INSERT records of v1 users) to ``queue_url``."""
    sqs = boto3.client("sqs")
    records = []
    for i in range(start, start + n):
        item = user(i)
        record = make_record("INSERT", keys={"user_id": item["user_id"]}, new_image=item)
        envelope = build_envelope(consumer=consumer, record=record,
                                  error={"type": error_type, "message": message, "traceback": ""},
                                  captured_at=captured_at)
        sqs.send_message(QueueUrl=queue_url, MessageBody=dumps(envelope),
                         MessageAttributes=message_attributes(consumer, error_type))
        records.append(record)
    return records


def depth(queue_url: str) -> tuple[int, int]:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def app(env):
    from opsapi import create_app

    app = create_app({"SAMPLE_TTL_S": 0, "DRAIN_OPTIONS": {"wait_time_s": 0}})
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()
