"""``Consumer.resolve_queue_url``: the one queue-URL lookup (worker and operator API)."""
from __future__ import annotations

import boto3
import pytest

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

    def deny(request, **_):
        from botocore.awsrequest import AWSResponse

        body = b'{"__type": "com.amazonaws.sqs#AccessDenied", "message": "denied by test"}'

        class Raw:
            def stream(self, **kw):
                yield body

        response = AWSResponse(request.url, 403, {"Content-Type": "application/x-amz-json-1.0"}, Raw())
        response._content = body
        return response

    sqs.meta.events.register("before-send.sqs.GetQueueUrl", deny)
    with pytest.raises(Exception, match="denied by test"):
        get_consumer("search-indexer").resolve_queue_url(sqs, "failures")
