"""Test consumers for the reprocess tests: real handle_record functions with a real sink
(a DynamoDB table on the moto server), importable by the CLI subprocess via --handler.

``index_v1`` is the code before the fix (it needs ``fullname``); ``index_v2`` after it.
"""
from __future__ import annotations

import os

import boto3

from streamkit.idempotency import idempotent

INDEX_TABLE_ENV = "TEST_INDEX_TABLE"
NOTIFY_TABLE_ENV = "TEST_NOTIFY_TABLE"


def _table(env: str):
    return boto3.resource("dynamodb").Table(os.environ[env])


def _upsert(user_id: str, name: str, record) -> None:
    _table(INDEX_TABLE_ENV).put_item(
        Item={"user_id": user_id, "name": name, "seq": record.sequence_number, "event": record.event_name}
    )


def index_v1(record) -> None:
    """Search-index stand-in before the fix: KeyError on the v2 schema (firstname/lastname)."""
    uid = record.keys["user_id"]
    if record.event_name == "REMOVE":
        _table(INDEX_TABLE_ENV).delete_item(Key={"user_id": uid})
        return
    _upsert(uid, record.new_image["fullname"], record)


def index_v2(record) -> None:
    """After the fix: reads both schemas."""
    uid = record.keys["user_id"]
    if record.event_name == "REMOVE":
        _table(INDEX_TABLE_ENV).delete_item(Key={"user_id": uid})
        return
    img = record.new_image
    _upsert(uid, img.get("fullname") or f"{img['firstname']} {img['lastname']}", record)


def always_fails(record) -> None:
    raise ValueError(f"still broken for {record.keys}")


def _notify(record) -> None:
    """A side effect that must not happen twice: count notifications per user."""
    _table(NOTIFY_TABLE_ENV).update_item(
        Key={"user_id": record.keys["user_id"]},
        UpdateExpression="ADD posts :one",
        ExpressionAttributeValues={":one": 1},
    )


notify_once = idempotent("slack-notifier")(_notify)
