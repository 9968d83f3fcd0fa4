"""Lambda handlers for the emulator tests, steered by their function's environment.

FN_NAME       recorded with each call
BEHAVIOUR     ok | raise-on-bad | report-bad | bad-identifier
BAD_USERS     comma-separated user_ids that fail
"""
from __future__ import annotations

import os

from streamkit.sources import keys_of, sequence_number_of
from tests.local import recorder

LOADED_WITH = os.environ.get("FN_NAME")  # module top level runs with the function's env


def _user(record: dict) -> str:
    return keys_of(record)["user_id"]["S"]  # on either source (Kinesis: inside kinesis.data)


def handler(event, context):
    name = os.environ["FN_NAME"]
    behaviour = os.environ.get("BEHAVIOUR", "ok")
    bad = set(filter(None, os.environ.get("BAD_USERS", "").split(",")))
    records = event["Records"]
    recorder.calls.append((name, [sequence_number_of(r) for r in records], [_user(r) for r in records]))
    recorder.environ_seen.append((name, os.environ.get("SHARED_VAR")))
    assert LOADED_WITH == name
    recorder.remaining_ms.append(context.get_remaining_time_in_millis())
    for hook in recorder.hooks:
        hook(name, event)
    failing = [r for r in records if _user(r) in bad]
    if behaviour == "raise-on-bad" and failing:
        raise RuntimeError(f"cannot handle {_user(failing[0])}")
    if behaviour == "report-bad":
        return {"batchItemFailures": [{"itemIdentifier": sequence_number_of(r)} for r in failing]}
    if behaviour == "bad-identifier" and failing:
        return {"batchItemFailures": [{"itemIdentifier": ""}]}
    return {"batchItemFailures": []}
