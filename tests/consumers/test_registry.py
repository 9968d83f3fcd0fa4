"""``Consumer.resolve_queue_url``: the one queue-URL lookup (worker and operator API)."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from consumers.registry import get_consumer


def test_configured_url_then_conventional_name_then_none(aws, monkeypatch):
    for var in ("SERVICE_NAME", "STAGE", "CRM_SYNC_FAILURE_QUEUE_URL", "CRM_SYNC_PARKING_QUEUE_URL"):
        monkeypatch.delenv(var, raising=False)
    sqs = boto3.client("sqs")
    crm = get_consumer("crm-sync")
    assert crm.resolve_queue_url(sqs, "failures") is None  # does not exist: None, not an error
    url = sqs.create_queue(QueueName="userstream-dev-crm-sync-failures")["QueueUrl"]
    assert crm.resolve_queue_url(sqs, "failures") == url
    monkeypatch.setenv("STAGE", "prod")
    assert crm.resolve_queue_url(sqs, "failures") is None  # the stage is part of the name
    monkeypatch.setenv("CRM_SYNC_PARKING_QUEUE_URL", "https://sqs.example/park")
    assert crm.resolve_queue_url(None, "parking") == "https://sqs.example/park"  # configured: no AWS call


def test_other_errors_propagate(aws):
    sqs = boto3.client("sqs")

    def deny(**_):  # AWS's answer to a caller without sqs:GetQueueUrl
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied by test"}}, "GetQueueUrl")

    sqs.meta.events.register("before-send.sqs.GetQueueUrl", deny)
    with pytest.raises(ClientError, match="denied by test"):
        get_consumer("search-indexer").resolve_queue_url(sqs, "failures")
