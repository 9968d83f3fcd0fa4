"""A real ``stream_handler`` for the emulator tests (the policy from FAILURE_POLICY).

BAD_USERS  comma-separated user_ids whose handle_record raises (until redeployed without)
Each invocation is recorded in ``recorder.calls``, each record applied as (FN_NAME, user_id)
in ``recorder.handled``.
"""
from __future__ import annotations

import os

from streamkit import stream_handler
from tests.local import recorder

NAME = os.environ["FN_NAME"]
BAD = set(filter(None, os.environ.get("BAD_USERS", "").split(",")))


def handle_record(record) -> None:
    uid = record.keys["user_id"]
    if uid in BAD:
        raise ValueError(f"cannot apply {uid}")
    recorder.handled.append((NAME, uid))


_handler = stream_handler(NAME, handle_record, metrics=False)


def handler(event, context):
    """Records what each invocation was given (as fn_handlers does), then runs streamkit."""
    records = event["Records"]
    recorder.calls.append((NAME, [r["dynamodb"]["SequenceNumber"] for r in records],
                           [r["dynamodb"]["Keys"]["user_id"]["S"] for r in records]))
    response = _handler(event, context)
    recorder.responses.append((NAME, response))
    return response
