"""The failure ledger: one DynamoDB item per captured failure (the one owner of its format).

Why it exists: SQS has no peek. An operator page that samples a failure queue with
``ReceiveMessage`` raises every sampled message's receive count until the queue's redrive
policy moves it to parking. So every capture writes an item here (in batches, after the
send), the reprocess worker updates it on every disposition, and the page and the API read
counts, samples, history, filters and the parked list from this table, never from a queue.

Items (table ``LEDGER_TABLE``; key ``consumer`` + ``id``; GSI ``byState``: ``consumerState``
+ ``capturedAt``; TTL ``expiresAt``):

- a **failure** (``id`` ``f#<capturedAt>#<record ident>``, derived from the envelope, so the
  capture path and the worker name the same item without reading it): ``state`` captured |
  retrying | parked | handled, ``messageId``, ``capturedAt``, ``errorType``, ``errorMessage``,
  ``eventName``, ``eventID``, ``keys`` (DynamoDB JSON) and ``keysText`` (plain JSON, for
  filtering), ``sequenceNumber``, ``changeOrder`` (when the record has one), ``recordCreatedAt``,
  ``attempts``, ``parkReason``, ``settledBy`` (the job or run that settled it), ``updatedAt``;
- a **blocking** record of a hard-fail consumer (``id`` ``b#<sequenceNumber>``): the record
  its shard is stuck on, its real error, how many invocations failed on it, first and last
  failure, ``state`` blocked | resolved. Written by the hard-fail policy, once per failed
  invocation; the badge of a blocked consumer shows it instead of the mapping's generic
  "batch item failure" text.

Writes never block or fail a capture: they are bounded (short timeouts, few retries), and a
write that still fails is logged and counted (metric ``ledger_write_failures``).
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .settings import Setting, load
from .timefmt import iso, iso_from_epoch, now_iso, parse_iso

# --- the format ------------------------------------------------------------------------
FAILURE_PREFIX = "f#"
BLOCKING_PREFIX = "b#"
STATE_INDEX = "byState"
FAILURE_STATES = ("captured", "retrying", "parked", "handled")
OPEN_STATES = ("captured", "retrying")  # still in the failure queue
BLOCKING_STATES = ("blocked", "resolved")
MAX_MESSAGE_CHARS = 1_000
MAX_REASON_CHARS = 1_000
MAX_KEYS_TEXT = 1_000
BATCH_WRITE_MAX = 25  # DynamoDB's BatchWriteItem limit
DEFAULT_RETENTION_DAYS = 84  # 14-day queue retention x 5 attempts + 14 days in parking
METRIC_WRITE_FAILURES = "ledger_write_failures"


LEDGER_TABLE = Setting(
    "LEDGER_TABLE", "the failure ledger (DynamoDB): one item per captured failure, read by the operator API; "
    "unset: no ledger writes", hint="serverless.yml generates it: {Ref: LedgerTable}")
LEDGER_RETENTION_DAYS = Setting(
    "LEDGER_RETENTION_DAYS", "how long a ledger item outlives its failure (queue retention x attempts + parking)",
    parse=int, default=DEFAULT_RETENTION_DAYS, low=1, high=3650)
SETTINGS = (LEDGER_TABLE, LEDGER_RETENTION_DAYS)


def ledger_settings(env: Mapping[str, str] | None = None) -> tuple[str | None, int]:
    """(``LEDGER_TABLE`` or None, ``LEDGER_RETENTION_DAYS``), checked (``ConfigError``) at cold start.
    No table: no ledger writes (a function deployed without one still captures)."""
    values = load(SETTINGS, env, owner="ledger")
    return values["LEDGER_TABLE"] or None, values["LEDGER_RETENTION_DAYS"]


def _record_ident(record: Any) -> str:
    """Sequence number (either source), else event id, else a hash of the record."""
    from .sources import event_id_of, sequence_number_of

    seq = sequence_number_of(record)
    if seq:
        return seq
    event_id = event_id_of(record) or (record.get("eventID") if isinstance(record, dict) else None)
    if isinstance(event_id, str) and event_id:
        return event_id
    text = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return "h" + hashlib.sha1(text.encode()).hexdigest()[:16]


def failure_id(envelope: Mapping[str, Any]) -> str:
    """The ledger id of a captured failure, from its envelope alone: its capture time and its
    record's sequence number (else event id, else a hash). Re-sent copies keep both, so the
    capture path and every later worker run name the same item."""
    return f"{FAILURE_PREFIX}{envelope.get('capturedAt') or ''}#{_record_ident(envelope.get('record'))}"


def message_failure_id(message_id: str, seen_at: str | None) -> str:
    """The ledger id of a failure-queue message that is not an envelope (Lambda's on-failure
    record, a malformed body): its arrival time and message id."""
    return f"{FAILURE_PREFIX}{seen_at or ''}#m-{message_id}"


def plain_keys_text(keys: Any) -> str | None:
    """``{"user_id": {"S": "u1"}}`` -> ``{"user_id":"u1"}``: what a key filter matches against."""
    if not isinstance(keys, dict):
        return None
    from .ddbjson import DeserializationError, deserialize_image

    try:
        plain = deserialize_image(keys)
    except DeserializationError:
        plain = keys
    return json.dumps(plain, sort_keys=True, default=str, separators=(",", ":"))[:MAX_KEYS_TEXT]


def _view_fields(record: dict) -> tuple[str | None, str | None]:
    """(``change_order``, creation time as ISO) through ``StreamRecord``, which knows both sources."""
    try:
        from .record import StreamRecord

        view = StreamRecord(record)
        created = view.approximate_creation_time
        return str(view.change_order), iso(created) if created is not None else None
    except Exception:
        return None, None


def record_fields(record: Any) -> dict[str, Any]:
    """What the ledger keeps of a stream record (DynamoDB Streams or Kinesis): identity, keys and
    ordering, no images (``streamkit.sources`` reads both formats)."""
    from .sources import event_id_of, event_name_of, keys_of, sequence_number_of

    if not isinstance(record, dict):
        return {}
    keys = keys_of(record)
    order, created = _view_fields(record)
    return {
        "eventName": event_name_of(record) or record.get("eventName"),
        "eventID": event_id_of(record) or record.get("eventID"),
        "keys": keys,
        "keysText": plain_keys_text(keys),
        "sequenceNumber": sequence_number_of(record),
        "changeOrder": order,
        "recordCreatedAt": created,
    }


def failure_item(envelope: Mapping[str, Any], *, state: str, message_id: str | None, retention_days: int,
                 record: Any = None, now: float | None = None) -> dict[str, Any]:
    """The whole ledger item of a failure (plain values; ``to_attributes`` makes it DynamoDB JSON).

    ``record`` is the full record when the envelope holds only a claim-check stub."""
    now = time.time() if now is None else now
    raw_error, raw_ref, raw_source = envelope.get("error"), envelope.get("payloadRef"), envelope.get("source")
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    consumer = str(envelope.get("consumer") or "")
    ref: Mapping[str, Any] | None = raw_ref if isinstance(raw_ref, dict) else None
    source: Mapping[str, Any] = raw_source if isinstance(raw_source, dict) else {}
    item = {
        "consumer": consumer,
        "id": failure_id(envelope),
        "kind": "failure",
        "state": state,
        "consumerState": f"{consumer}#{state}",
        "capturedAt": envelope.get("capturedAt"),
        "messageId": message_id,
        "errorType": str(error.get("type") or "Unknown"),
        "errorMessage": str(error.get("message") or "")[:MAX_MESSAGE_CHARS],
        "attempts": envelope.get("attempts") if isinstance(envelope.get("attempts"), int) else 1,
        "functionName": source.get("functionName"),
        "claimCheck": f"s3://{ref.get('bucket')}/{ref.get('key')}" if ref else None,
        "updatedAt": iso_from_epoch(now),
        "expiresAt": int(now + retention_days * 86_400),
        **record_fields(record if isinstance(record, dict) else envelope.get("record")),
    }
    return item


def to_attributes(item: Mapping[str, Any]) -> dict[str, dict]:
    """Plain ledger values -> boto3's low-level DynamoDB JSON (``streamkit.ddbjson``, the one
    owner of that format); None is left out; ``keys`` is the record's Lambda JSON already."""
    from .ddbjson import lambda_to_client, serialize_value

    out: dict[str, dict] = {}
    for name, value in item.items():
        if value is None:
            continue
        out[name] = lambda_to_client({"M": value} if name == "keys" else serialize_value(value))
    return out


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger item as boto3 reads it -> plain values (``keys`` as the record's Lambda JSON)."""
    from .ddbjson import client_to_lambda, deserialize_image

    keys = item.get("keys")
    plain = deserialize_image({k: client_to_lambda(v) for k, v in item.items() if k != "keys"}) or {}
    if isinstance(keys, dict) and "M" in keys:
        plain["keys"] = client_to_lambda(keys)["M"]
    return plain


# --- writing -------------------------------------------------------------------------------------
@dataclass
class WriteResult:
    written: int = 0
    failed: int = 0
    reason: str | None = None


def _client() -> Any:
    from .awsclient import make_client

    # Short timeouts and few attempts: a ledger write must never hold up a capture.
    return make_client("dynamodb", max_attempts=2, connect_timeout=1, read_timeout=2)


class Ledger:
    """Writes one consumer's ledger items. Every method returns normally: a failure is logged,
    counted (``on_failure(n, reason)``, by default the ``ledger_write_failures`` metric) and
    returned, never raised into the capture path or the worker."""

    def __init__(self, table: str, consumer: str, *, retention_days: int = DEFAULT_RETENTION_DAYS,
                 client: Any = None, client_factory: Callable[[], Any] | None = None,
                 unprocessed_retries: int = 3, sleep: Callable[[float], None] = time.sleep,
                 on_failure: Callable[[int, str], None] | None = None, clock: Callable[[], float] = time.time):
        self.table, self.consumer, self.retention_days = table, consumer, retention_days
        self._client = client
        self._client_factory = client_factory or _client
        self.unprocessed_retries = unprocessed_retries
        self.sleep, self.clock = sleep, clock
        self._on_failure = on_failure

    @classmethod
    def from_env(cls, consumer: str, env: Mapping[str, str] | None = None, **kwargs: Any) -> Ledger | None:
        table, days = ledger_settings(env)
        return cls(table, consumer, retention_days=days, **kwargs) if table else None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _failed(self, n: int, reason: str, **context: Any) -> WriteResult:
        from .log import get_logger

        get_logger(component="ledger", consumer=self.consumer).error(
            "ledger write failed; the failure itself is safe in its queue", items=n, reason=reason[:500], **context)
        try:
            if self._on_failure is not None:
                self._on_failure(n, reason)
            else:
                from .metrics import count_now

                count_now(self.consumer, METRIC_WRITE_FAILURES, n)
        except Exception:  # counting must not fail the caller either
            pass
        return WriteResult(failed=n, reason=reason)

    # ---- the capture path: whole items, BatchWriteItem ----------------------------------------
    def put_failures(self, captured: Iterable[tuple[Mapping[str, Any], str | None, Any]], *,
                     state: str = "captured") -> WriteResult:
        """Write ``(envelope, message id, full record or None)`` as new items, 25 per call;
        ``UnprocessedItems`` are retried a few times with a short backoff."""
        now = self.clock()
        requests = [{"PutRequest": {"Item": to_attributes(failure_item(
            env, state=state, message_id=mid, retention_days=self.retention_days, record=rec, now=now))}}
            for env, mid, rec in captured]
        result = WriteResult()
        for i in range(0, len(requests), BATCH_WRITE_MAX):
            chunk = requests[i : i + BATCH_WRITE_MAX]
            written, reason = self._batch_write(chunk)
            result.written += written
            if reason is not None:
                failed = self._failed(len(chunk) - written, reason)
                result.failed += failed.failed
                result.reason = reason
        return result

    def _batch_write(self, chunk: list[dict]) -> tuple[int, str | None]:
        pending = chunk
        for attempt in range(self.unprocessed_retries + 1):
            try:
                resp = self.client.batch_write_item(RequestItems={self.table: pending})
            except Exception as exc:
                from .awsclient import describe_aws_error

                return len(chunk) - len(pending), describe_aws_error(exc)
            left = (resp.get("UnprocessedItems") or {}).get(self.table) or []
            if not left:
                return len(chunk), None
            pending = left
            if attempt < self.unprocessed_retries:
                self.sleep(min(0.2, 0.02 * (2**attempt)) * (0.5 + random.random() / 2))
        return len(chunk) - len(pending), f"{len(pending)} item(s) still unprocessed after {self.unprocessed_retries} retries"

    # ---- the worker: one UpdateItem per disposition ---------------------------------------------
    def settle(self, envelope: Mapping[str, Any] | None, *, state: str, item_id: str | None = None,
               attempts: int | None = None, error: Mapping[str, Any] | None = None, park_reason: str | None = None,
               message_id: str | None = None, settled_by: str | None = None, note: str | None = None,
               seen_at: str | None = None) -> WriteResult:
        """Record a disposition. An upsert: every descriptive field is set from the envelope, so an
        item the capture path never wrote (its ledger write failed, or it predates the ledger) is
        repaired here rather than missing."""
        now = self.clock()
        if envelope is not None:
            fields = failure_item(envelope, state=state, message_id=message_id, retention_days=self.retention_days,
                                  now=now)
        else:
            fields = {"consumer": self.consumer, "id": item_id, "kind": "failure", "state": state,
                      "consumerState": f"{self.consumer}#{state}", "capturedAt": seen_at, "messageId": message_id,
                      "updatedAt": iso_from_epoch(now), "expiresAt": int(now + self.retention_days * 86_400)}
        if item_id is not None:
            fields["id"] = item_id
        if attempts is not None:
            fields["attempts"] = attempts
        if error:
            fields["errorType"] = str(error.get("type") or "Unknown")
            fields["errorMessage"] = str(error.get("message") or "")[:MAX_MESSAGE_CHARS]
        fields["parkReason"] = park_reason[:MAX_REASON_CHARS] if park_reason else None
        fields["settledBy"] = settled_by
        fields["settledNote"] = note[:MAX_REASON_CHARS] if note else None
        key = {"consumer": {"S": self.consumer}, "id": {"S": str(fields["id"])}}
        sets, removes, values, names = [], [], {}, {}
        # capture-time facts are kept if the item has them (the worker's copy may be a stub)
        keep = {"capturedAt", "messageId", "functionName", "keys", "keysText", "eventName", "eventID",
                "sequenceNumber", "changeOrder", "recordCreatedAt", "claimCheck"}
        if message_id:
            keep.discard("messageId")
        for i, (name, value) in enumerate(f for f in fields.items() if f[0] not in ("consumer", "id")):
            names[f"#a{i}"] = name
            if value is None:
                if name in ("parkReason", "settledNote"):
                    removes.append(f"#a{i}")
                else:
                    names.pop(f"#a{i}")
                continue
            values[f":v{i}"] = to_attributes({name: value})[name]
            sets.append(f"#a{i} = if_not_exists(#a{i}, :v{i})" if name in keep else f"#a{i} = :v{i}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self.client.update_item(TableName=self.table, Key=key, UpdateExpression=expression,
                                    ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except Exception as exc:
            from .awsclient import describe_aws_error

            return self._failed(1, describe_aws_error(exc), item=str(fields["id"]), state=state)
        return WriteResult(written=1)

    # ---- the hard-fail policy: the record a shard is blocked on ---------------------------------
    def blocking_failed(self, record: Any, error: Mapping[str, Any], *, function_name: str | None = None
                        ) -> WriteResult:
        """One failed invocation on the record a hard-fail shard is stuck on: its real error and
        one more attempt (UpdateItem ``ADD attempts 1``)."""
        fields = record_fields(record)
        seq = fields.get("sequenceNumber") or _record_ident(record)
        now = self.clock()
        at = iso_from_epoch(now)
        fixed = {"state": "blocked", "consumerState": f"{self.consumer}#blocked", "kind": "blocking",
                 "errorType": str(error.get("type") or "Unknown"),
                 "errorMessage": str(error.get("message") or "")[:MAX_MESSAGE_CHARS],
                 "lastFailedAt": at, "updatedAt": at, "expiresAt": int(now + self.retention_days * 86_400),
                 **fields, "functionName": function_name}
        names, values, sets = {"#first": "capturedAt", "#n": "attempts"}, {":at": {"S": at}, ":one": {"N": "1"}}, []
        for i, (name, value) in enumerate(fixed.items()):
            if value is None:
                continue
            names[f"#a{i}"], values[f":v{i}"] = name, to_attributes({name: value})[name]
            sets.append(f"#a{i} = :v{i}")
        sets.append("#first = if_not_exists(#first, :at)")
        try:
            self.client.update_item(
                TableName=self.table, Key={"consumer": {"S": self.consumer}, "id": {"S": f"{BLOCKING_PREFIX}{seq}"}},
                UpdateExpression="SET " + ", ".join(sets) + " REMOVE resolvedAt, resolution ADD #n :one",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except Exception as exc:
            from .awsclient import describe_aws_error

            return self._failed(1, describe_aws_error(exc), item=f"{BLOCKING_PREFIX}{seq}")
        return WriteResult(written=1)

    def blocking_resolved(self, sequence_number: str, how: str = "handled") -> WriteResult:
        """The shard moved past the record it was blocked on (it succeeded)."""
        at = now_iso()
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"consumer": {"S": self.consumer}, "id": {"S": f"{BLOCKING_PREFIX}{sequence_number}"}},
                UpdateExpression="SET #state = :state, consumerState = :cs, resolvedAt = :at, resolution = :how, "
                                 "updatedAt = :at",
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":state": {"S": "resolved"}, ":cs": {"S": f"{self.consumer}#resolved"},
                                           ":at": {"S": at}, ":how": {"S": how}})
        except Exception as exc:
            from .awsclient import describe_aws_error, error_code

            if error_code(exc) == "ConditionalCheckFailedException":
                return WriteResult()
            return self._failed(1, describe_aws_error(exc), item=f"{BLOCKING_PREFIX}{sequence_number}")
        return WriteResult(written=1)

    def open_blocking(self, limit: int = 100) -> set[str]:
        """Sequence numbers this consumer is recorded as blocked on (one Query; empty on error)."""
        try:
            resp = self.client.query(
                TableName=self.table, IndexName=STATE_INDEX, Limit=limit,
                KeyConditionExpression="consumerState = :cs",
                ExpressionAttributeValues={":cs": {"S": f"{self.consumer}#blocked"}})
        except Exception as exc:
            from .awsclient import describe_aws_error

            self._failed(0, describe_aws_error(exc), during="loading blocked records")
            return set()
        return {i["id"]["S"][len(BLOCKING_PREFIX):] for i in resp.get("Items") or [] if "id" in i}


def age_out_at(record_created_at: str | None, max_record_age_s: int | None) -> str | None:
    """When Lambda discards a record it keeps failing on (``MaximumRecordAgeInSeconds``)."""
    created = parse_iso(record_created_at)
    if created is None or max_record_age_s is None or max_record_age_s < 0:
        return None
    from datetime import timedelta

    return iso(created + timedelta(seconds=max_record_age_s))
