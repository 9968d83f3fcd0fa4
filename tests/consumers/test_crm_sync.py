"""crm-sync against the local HubSpot-style CRM server."""
import boto3
import pytest

import consumers.crm_sync as cs
from streamkit import ConfigError, PermanentError, TransientError, stream_handler
from streamkit.testing import LambdaContext, make_event

from .conftest import rec, sr, v1_user, v2_user


def test_insert_upserts_by_email_with_exact_request(crm):
    cs.handle_record(sr("INSERT", v1_user(1)))
    (req,) = crm.requests
    assert (req.method, req.path) == ("POST", "/crm/v3/objects/contacts/batch/upsert")
    assert req.headers["authorization"] == "Bearer test-token"
    assert req.json() == {"inputs": [{"idProperty": "email", "id": "user1@example.com", "properties": {
        "email": "user1@example.com", "firstname": "Ada", "lastname": "Lovelace1", "user_id": "u1", "plan": "pro"}}]}
    contact = crm.by_email("user1@example.com")
    assert contact["properties"]["firstname"] == "Ada"


def test_modify_and_redelivery_update_the_same_contact(crm):
    cs.handle_record(sr("INSERT", v1_user(1)))
    first_id = crm.by_email("user1@example.com")["id"]
    cs.handle_record(sr("MODIFY", v2_user(1, plan="team"), old=v1_user(1)))
    cs.handle_record(sr("MODIFY", v2_user(1, plan="team"), old=v1_user(1)))  # redelivered
    (contact,) = crm.active()
    assert contact["id"] == first_id
    assert contact["properties"] | {} == {"email": "user1@example.com", "firstname": "Grace", "lastname": "Hopper1",
                                          "user_id": "u1", "plan": "team"}


def test_remove_archives_and_missing_contact_is_fine(crm):
    cs.handle_record(sr("INSERT", v1_user(1)))
    cid = crm.by_email("user1@example.com")["id"]
    crm.requests.clear()
    cs.handle_record(sr("REMOVE", None, old=v1_user(1)))
    assert [(r.method, r.path, r.query) for r in crm.requests] == [
        ("GET", "/crm/v3/objects/contacts/user1@example.com", {"idProperty": "email", "properties": "email"}),
        ("DELETE", f"/crm/v3/objects/contacts/{cid}", {}),
    ]
    assert crm.active() == [] and crm.contacts[cid]["archived"] is True
    crm.requests.clear()
    cs.handle_record(sr("REMOVE", None, old=v1_user(1)))  # again: 404 on lookup, nothing to do
    assert [r.method for r in crm.requests] == ["GET"]


def test_remove_without_old_image_is_permanent(crm):
    with pytest.raises(PermanentError, match="OldImage"):
        cs.handle_record(sr("REMOVE", None, user="u1"))


@pytest.mark.parametrize("status, headers, retry_after", [(429, {"Retry-After": "3"}, 3.0), (500, {}, None),
                                                          (503, {}, None)])
def test_rate_limits_and_5xx_are_transient(crm, status, headers, retry_after):
    crm.fail(status, {"status": "error", "message": "slow down", "category": "RATE_LIMITS"}, headers=headers)
    with pytest.raises(TransientError) as info:
        cs.handle_record(sr("INSERT", v1_user(1)))
    assert info.value.retry_after == retry_after
    assert crm.active() == []


@pytest.mark.parametrize("status, text", [(400, "VALIDATION_ERROR"), (401, "CRM_TOKEN"), (403, "scopes")])
def test_client_errors_are_permanent_with_a_clear_message(crm, status, text):
    crm.fail(status, {"status": "error", "message": "nope", "category": "VALIDATION_ERROR"})
    with pytest.raises(cs.CrmError, match=text) as info:
        cs.handle_record(sr("INSERT", v1_user(1)))
    assert info.value.status == status and isinstance(info.value, PermanentError)


def test_real_validation_and_auth_errors_from_the_server(crm, monkeypatch):
    with pytest.raises(cs.CrmError, match="400 VALIDATION_ERROR: .*email"):
        cs.handle_record(sr("INSERT", v1_user(1, email="not-an-email")))
    monkeypatch.setenv("CRM_TOKEN", "wrong")
    with pytest.raises(cs.CrmError, match="401 INVALID_AUTHENTICATION.*CRM_TOKEN"):
        cs.handle_record(sr("INSERT", v1_user(1)))


def test_timeout_and_unreachable_are_transient(crm, monkeypatch):
    monkeypatch.setenv("CRM_TIMEOUT_S", "0.2")
    crm.fail(200, {"results": []}, delay_s=1.0)
    with pytest.raises(TransientError, match="timed out"):
        cs.handle_record(sr("INSERT", v1_user(1)))
    from local.aws import free_port

    monkeypatch.setenv("CRM_BASE_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="unreachable"):
        cs.handle_record(sr("INSERT", v1_user(1)))


def test_one_client_reused_across_records(crm):
    cs.handle_record(sr("INSERT", v1_user(1)))
    first = cs.client()
    cs.handle_record(sr("INSERT", v1_user(2)))
    assert cs.client() is first and len(crm.active()) == 2


def test_token_from_ssm_and_missing_settings(crm, aws, monkeypatch):
    monkeypatch.delenv("CRM_TOKEN")
    with pytest.raises(ConfigError, match="CRM_TOKEN_PARAM"):
        cs.handle_record(sr("INSERT", v1_user(1)))
    boto3.client("ssm").put_parameter(Name="/userstream/dev/crm-token", Value="test-token", Type="SecureString")
    monkeypatch.setenv("CRM_TOKEN_PARAM", "/userstream/dev/crm-token")
    cs.handle_record(sr("INSERT", v1_user(1)))
    assert len(crm.active()) == 1
    monkeypatch.delenv("CRM_BASE_URL")
    with pytest.raises(ConfigError, match="CRM_BASE_URL"):
        cs.handle_record(sr("INSERT", v1_user(2)))


def test_hard_fail_retries_transient_then_blocks_on_persistent_failure(crm):
    handler = stream_handler("crm-sync", cs.handle_record, policy="hard-fail")
    crm.fail(503, "unavailable", path_contains="/batch/upsert")
    records = [rec("INSERT", v1_user(i)) for i in range(3)]
    assert handler(make_event(records), LambdaContext()) == {"batchItemFailures": []}
    assert len(crm.active()) == 3
    crm.fail(503, "unavailable", times=100)
    more = [rec("INSERT", v1_user(i)) for i in range(3, 6)]
    out = handler(make_event(more), LambdaContext())
    # the shard blocks at the failing record: Lambda resumes from it (it and all after it again)
    assert out == {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]} for r in more]}
    assert handler.loop.last_batch.reported == {0, 1, 2}
    assert len(crm.active()) == 3  # nothing after the blocked record was applied
    assert len(crm.requests) == 4 + 3  # 3 upserts + 1 retry, then 1 try + 2 retries of the blocked record


def test_multi_status_errors_are_permanent(crm):
    crm.fail(207, {"status": "COMPLETE", "results": [], "numErrors": 1, "errors": [
        {"status": "error", "category": "VALIDATION_ERROR", "message": "Property \"plan\" does not exist"}]})
    with pytest.raises(cs.CrmError, match="VALIDATION_ERROR.*plan"):
        cs.handle_record(sr("INSERT", v1_user(1)))


# --- stale writes: the change_order guard (DynamoDB, IDEMPOTENCY_TABLE) ----------------------
SOURCES = ["dynamodb", "kinesis"]


def change(source, event, item, *, at, old=None):
    seq = str(10**22 + int(at * 1000)) if source == "dynamodb" else None
    return sr(event, item, old=old, at=at, seq=seq, source=source)


def stored_order(uid):
    item = boto3.client("dynamodb").get_item(TableName="idempotency", Key={"id": {"S": f"crm-sync#order#{uid}"}},
                                             ConsistentRead=True).get("Item")
    return item["change_order"]["S"] if item else None


@pytest.mark.parametrize("source", SOURCES)
def test_two_changes_out_of_order_leave_the_newer_state(crm, source):
    newer = change(source, "MODIFY", v2_user(1, plan="team"), at=2)
    older = change(source, "MODIFY", v2_user(1, plan="free"), at=1)
    cs.handle_record(newer)
    upserts = len(crm.requests)
    cs.handle_record(older)  # late: skipped before any CRM call
    assert len(crm.requests) == upserts
    assert crm.by_email("user1@example.com")["properties"]["plan"] == "team"
    assert stored_order("u1") == newer.change_order


def test_a_kinesis_change_delivered_twice_is_applied_once(crm):
    from streamkit import StreamRecord
    from streamkit.testing import redeliver

    first = rec("MODIFY", v2_user(1, plan="pro"), at=1, source="kinesis")
    second = rec("MODIFY", v2_user(1, plan="team"), at=2, source="kinesis")
    for raw in (first, second, redeliver(first), redeliver(second)):
        cs.handle_record(StreamRecord(raw))
    assert [r.path for r in crm.requests].count("/crm/v3/objects/contacts/batch/upsert") == 2
    assert crm.by_email("user1@example.com")["properties"]["plan"] == "team"


@pytest.mark.parametrize("source", SOURCES)
def test_a_late_older_insert_does_not_bring_back_an_archived_contact(crm, source):
    cs.handle_record(change(source, "INSERT", v1_user(1), at=1))
    remove = change(source, "REMOVE", None, old=v1_user(1), at=3)
    cs.handle_record(remove)
    assert crm.active() == [] and stored_order("u1") == remove.change_order
    cs.handle_record(change(source, "MODIFY", v1_user(1, plan="late"), at=2))
    assert crm.active() == []
    cs.handle_record(change(source, "INSERT", v1_user(1, plan="again"), at=4))  # a real re-signup
    assert [c["properties"]["plan"] for c in crm.active()] == ["again"]


def test_the_order_is_recorded_only_after_the_crm_write_succeeded(crm):
    record = sr("INSERT", v1_user(1), at=1)
    crm.fail(503, "unavailable", times=1)
    with pytest.raises(TransientError):
        cs.handle_record(record)
    assert stored_order("u1") is None  # nothing applied, nothing recorded: the retry writes
    cs.handle_record(record)
    assert len(crm.active()) == 1 and stored_order("u1") == record.change_order


def test_a_writer_that_lost_the_race_is_logged_and_the_guard_keeps_the_newer_order(crm, capsys):
    """The remaining race (docs/consumers.md): a newer change recorded between our read and our
    write. The guard never moves backwards, and the overwrite is logged for a person."""
    older, newer = sr("MODIFY", v2_user(1, plan="old"), at=1), sr("MODIFY", v2_user(1, plan="new"), at=2)
    real_upsert = cs.upsert

    def racing_upsert(item):
        result = real_upsert(item)
        cs.applied_orders.record("u1", newer.change_order)  # the other writer finished meanwhile
        return result

    cs.upsert = racing_upsert
    try:
        cs.handle_record(older)
    finally:
        cs.upsert = real_upsert
    assert stored_order("u1") == newer.change_order
    assert "a newer change of this user was applied while this one was written" in capsys.readouterr().out


def test_missing_guard_table_is_a_config_error(crm, monkeypatch):
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TABLE"):
        cs.handle_record(sr("INSERT", v1_user(1)))
    assert crm.active() == []
