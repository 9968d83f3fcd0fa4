"""Secret values never leave the process that read them (streamkit.redact): in AWS the CRM
token lives in SSM, so no one downstream (the operator API, a log reader) knows the value to
hide. Here the CRM echoes the token in its error, as it is, URL-encoded and cut short; the
envelope in the failure queue, the ledger item and the failure log carry none of it."""
from __future__ import annotations

import json
from urllib.parse import quote

import boto3

from streamkit import DlqCapture, stream_handler
from tests.support.aws import create_queue, take_all
from tests.support.users import insert, user_item

TOKEN = "pat-na1-5f3c0e8a-91d2-4b7e-a6c4-2d9b7e1f0c33"


def test_a_vendor_error_echoing_the_ssm_token_is_redacted_in_envelope_ledger_and_log(
        idempotency_table, ledger_table, monkeypatch, capsys):
    from local.fakes import FakeCRM

    boto3.client("ssm").put_parameter(Name="/userstream/crm-token", Value=TOKEN, Type="SecureString")
    monkeypatch.setenv("CRM_TOKEN_PARAM", "/userstream/crm-token")  # no CRM_TOKEN: read from SSM
    queue_url, _ = create_queue("crm-sync-failures")
    echoed = (f"token {TOKEN} is not allowed for this portal (sent as {quote(TOKEN, safe='')}); "
              f"see https://crm.example/keys?k={quote(TOKEN)}; last key tried: {TOKEN[:20]}...")
    with FakeCRM(token=TOKEN) as crm:
        monkeypatch.setenv("CRM_BASE_URL", crm.url)
        crm.fail(403, {"status": "error", "category": "MISSING_SCOPES", "message": echoed}, times=10)
        from consumers.crm_sync import handle_record

        handler = stream_handler("crm-sync", handle_record, policy=DlqCapture(queue_url=queue_url), metrics=False)
        assert handler({"Records": [insert(user_item(1, v2=False))]})["batchItemFailures"] == []

    (message,) = take_all(queue_url)
    body = message["raw"]
    error = message["body"]["error"]
    assert error["type"] == "CrmError"  # names are data: never redacted
    assert "MISSING_SCOPES" in error["message"] and "[redacted]" in error["message"]
    ddb = boto3.client("dynamodb")
    (item,) = ddb.scan(TableName=ledger_table)["Items"]
    log = capsys.readouterr()
    for where, text in (("envelope", body), ("ledger", json.dumps(item)), ("log", log.out + log.err)):
        for form in (TOKEN, quote(TOKEN, safe=""), TOKEN[:20], TOKEN[:12]):
            assert form not in text, (where, form)
    assert "[redacted]" in item["errorMessage"]["S"]
