"""What one failure-queue message is: a pure function of the message and the consumer.

Three kinds come out:
- an **envelope** of this consumer (contract 4; a claim-check stub included: its record is
  fetched from S3 when it runs);
- a Lambda **on-failure** record (``streamkit.onfailure``) from this consumer's function:
  metadata naming a range of the stream;
- an **on-failure object** notification: S3 telling that a hard-fail consumer's S3
  destination kept a failed invocation (records included); the object is read when it runs
  (S3's test event names no object: it runs as nothing to do);
- something to **park**, with the reason: not JSON, wrong envelope version, unknown or
  foreign consumer, an unusable on-failure record, one from another function.

No AWS call, no clock, no shared state: the worker's loop decides what to do with it.
"""
from __future__ import annotations

import enum
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from consumers.registry import CONSUMERS
from streamkit import onfailure, sources
from streamkit.envelope import Envelope, EnvelopeError, parse_envelope
from streamkit.ordering import change_order_of
from streamkit.timefmt import iso_from_ms


class Kind(enum.Enum):
    ENVELOPE = "envelope"
    ON_FAILURE = "on-failure"
    ON_FAILURE_OBJECT = "on-failure-object"
    PARK = "park"


@dataclass(frozen=True)
class Classified:
    kind: Kind
    error_type: str | None = None  # counted under this (None: "malformed")
    group: str = ""  # messages of one group run one after the other, in ``order``
    order: str = ""  # the record's change_order (one item's changes, oldest first; "" when unknown)
    seen_at: str | None = None  # capture time, else SentTimestamp: for oldest/newest
    envelope: Envelope | None = None
    on_failure: onfailure.OnFailureMessage | None = None
    objects: tuple[onfailure.ObjectRef, ...] = ()  # ON_FAILURE_OBJECT: what to read from S3
    park_reason: str | None = None


OBJECT_ERROR_TYPE = "OnFailureObject"  # counted under this until the object is read


def foreign_function(message: onfailure.OnFailureMessage, consumer: str) -> str | None:
    """The park reason when an on-failure record came from another consumer's function."""
    fn = message.function_name
    if fn and not fn.endswith(consumer):
        return f"on-failure message from function {fn}, not consumer {consumer}"
    return None


def key_of(record: Any) -> str:
    """A stable grouping key for a record's item, on either source."""
    return json.dumps(sources.keys_of(record), sort_keys=True, default=str)


def sequence_of(record: Any) -> int:
    """A record's sequence number as an integer, for shard order (0 when it has none)."""
    seq = sources.sequence_number_of(record)
    return int(seq) if seq and seq.isdigit() else 0


def order_of(record: Any) -> str:
    """A record's ``change_order`` ("" when it cannot be ordered): captures of one item run
    oldest change first, whatever order Kinesis delivered them in."""
    try:
        return change_order_of(record)
    except Exception:
        return ""


def classify(message: dict, consumer: str, known: Collection[str] = CONSUMERS) -> Classified:
    """Classify one SQS message (``Body`` and ``Attributes``) taken from ``consumer``'s queue."""
    body = message.get("Body", "")
    sent = iso_from_ms((message.get("Attributes") or {}).get("SentTimestamp"))
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        data = None
    if onfailure.is_on_failure(data):
        seen = data.get("timestamp") or sent
        try:
            msg = onfailure.parse(data)
        except onfailure.OnFailureMessageError as exc:
            return _park(f"unusable on-failure message: {exc.reason}", seen_at=seen)
        foreign = foreign_function(msg, consumer)
        if foreign:
            return _park(foreign, seen_at=seen)
        return Classified(Kind.ON_FAILURE, error_type=msg.batch.key, group=f"shard:{msg.batch.shard_id}",
                          seen_at=seen, on_failure=msg)
    if onfailure.is_object_notification(data):
        try:
            refs = onfailure.object_refs(data)
        except onfailure.OnFailureMessageError as exc:
            return _park(f"unusable S3 notification: {exc.reason}", error_type=OBJECT_ERROR_TYPE, seen_at=sent)
        if not refs:
            return Classified(Kind.ON_FAILURE_OBJECT, error_type=onfailure.S3_TEST_EVENT, group="s3:test",
                              seen_at=sent)
        shards = {r.shard_id for r in refs}
        group = f"shard:{shards.pop()}" if len(shards) == 1 and None not in shards else f"s3:{refs[0].url}"
        return Classified(Kind.ON_FAILURE_OBJECT, error_type=OBJECT_ERROR_TYPE, group=group,
                          order=refs[0].key,  # Lambda's keys sort by time within a mapping and shard
                          seen_at=refs[0].event_time or sent, objects=tuple(refs))
    try:
        env = parse_envelope(body)
    except EnvelopeError as exc:
        return _park(f"malformed envelope: {exc.reason}", seen_at=sent)
    error_type = (env.error or {}).get("type") or "Unknown"
    seen = env.captured_at or sent
    if env.consumer not in known:
        return _park(f"unknown consumer {env.consumer!r} in envelope",
                     error_type=error_type, seen_at=seen, envelope=env)
    if env.consumer != consumer:
        return _park(f"envelope for consumer {env.consumer!r} found in {consumer}'s queue",
                     error_type=error_type, seen_at=seen, envelope=env)
    return Classified(Kind.ENVELOPE, error_type=error_type, group=key_of(env.record), order=order_of(env.record),
                      seen_at=seen, envelope=env)


def _park(reason: str, *, error_type: str | None = None, seen_at: str | None = None,
          envelope: Envelope | None = None) -> Classified:
    return Classified(Kind.PARK, error_type=error_type, seen_at=seen_at, envelope=envelope, park_reason=reason)
