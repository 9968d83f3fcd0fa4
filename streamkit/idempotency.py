"""Run a side effect at most once per ``(consumer, eventID)``: a conditional put in DynamoDB.

Redelivery is normal (whole-batch retries, timeouts, reprocessing), so a consumer whose
effect is not naturally idempotent (a Slack post) wraps its ``handle_record``::

    handle_record = idempotent("slack-notifier")(_post)

Table (``IDEMPOTENCY_TABLE``): partition key ``id`` (S) = ``"<consumer>#<eventID>"``, TTL
attribute ``expires_at`` (epoch seconds). One item per record goes through:

1. claim: put ``status=IN_PROGRESS`` with ``lock_expires_at`` and a random ``token``, on
   condition that no item exists, or it has expired (TTL deletion is lazy), or it is an
   ``IN_PROGRESS`` whose lock has timed out (its holder died);
2. run the wrapped function;
3. success: set ``status=COMPLETED`` (only if we still hold the token);
   failure: delete our claim (only if we still hold it) so a retry can run, and re-raise.

A claim that finds ``COMPLETED`` returns ``None`` without calling the function (the
duplicate is a success); one that finds a live ``IN_PROGRESS`` raises ``TransientError``
(another invocation is on it right now). Expiry defaults to 30 days, longer than the
failure queue's 14-day retention, so a record replayed from the queue is still guarded.
The lock timeout (default 60 s) must exceed one call of the wrapped function.
"""
from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from typing import Any, Callable

from .errors import ConfigError, TransientError

TABLE_ENV = "IDEMPOTENCY_TABLE"
DEFAULT_EXPIRY_S = 30 * 24 * 3600
DEFAULT_LOCK_TIMEOUT_S = 60
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"

_client = None
_client_endpoint: str | None = None
_client_lock = threading.Lock()


def _dynamodb():
    """One boto3 client per process and AWS_ENDPOINT_URL, created on first use.

    Locked: the reprocess worker calls consumers from a thread pool, and creating clients
    on boto3's default session from several threads at once is not safe.
    """
    global _client, _client_endpoint
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    client = _client
    if client is not None and endpoint == _client_endpoint:
        return client
    with _client_lock:
        if _client is None or endpoint != _client_endpoint:
            import boto3

            _client, _client_endpoint = boto3.session.Session().client("dynamodb"), endpoint
        return _client


def reset_client() -> None:
    """Forget the cached client."""
    global _client
    _client = None


def record_key(consumer: str, record: Any) -> str:
    """``"<consumer>#<eventID>"``; without an eventID, the stream ARN and sequence number."""
    event_id = getattr(record, "event_id", None)
    if not event_id:
        event_id = f"{getattr(record, 'source_arn', '') or ''}:{record.sequence_number}"
    return f"{consumer}#{event_id}"


class Idempotency:
    """The guard for one consumer; see the module docstring for the protocol."""

    def __init__(
        self,
        consumer: str,
        *,
        table: str | None = None,
        expiry_s: int = DEFAULT_EXPIRY_S,
        lock_timeout_s: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.consumer = consumer
        self._table = table
        self.expiry_s = expiry_s
        self._lock_timeout_s = lock_timeout_s
        self.clock = clock

    @property
    def table(self) -> str:
        table = self._table or os.environ.get(TABLE_ENV)
        if not table:
            raise ConfigError(
                f"{self.consumer} needs {TABLE_ENV} (DynamoDB table, partition key 'id' (S), TTL attribute 'expires_at')"
            )
        return table

    @property
    def lock_timeout_s(self) -> int:
        if self._lock_timeout_s is not None:
            return self._lock_timeout_s
        return int(os.environ.get("IDEMPOTENCY_LOCK_TIMEOUT_S", DEFAULT_LOCK_TIMEOUT_S))

    def claim(self, key: str) -> str | None:
        """Take the lock: a token, or ``None`` when the work is already COMPLETED."""
        client = _dynamodb()
        now = int(self.clock())
        token = uuid.uuid4().hex
        try:
            client.put_item(
                TableName=self.table,
                Item={
                    "id": {"S": key},
                    "status": {"S": IN_PROGRESS},
                    "token": {"S": token},
                    "lock_expires_at": {"N": str(now + self.lock_timeout_s)},
                    "expires_at": {"N": str(now + self.expiry_s)},
                    "consumer": {"S": self.consumer},
                },
                ConditionExpression=(
                    "attribute_not_exists(id) OR expires_at < :now"
                    " OR (#s = :in_progress AND lock_expires_at < :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":in_progress": {"S": IN_PROGRESS}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return token
        except client.exceptions.ConditionalCheckFailedException as exc:
            item = exc.response.get("Item")  # the blocking item, without a second call
        if item is None:
            item = client.get_item(TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True).get("Item") or {}
        status = item.get("status", {}).get("S")
        if status == COMPLETED:
            return None
        lock_left = int(item.get("lock_expires_at", {}).get("N", now)) - now
        raise TransientError(f"{key} is being processed by another invocation", retry_after=min(max(1, lock_left), 5))

    def complete(self, key: str, token: str) -> None:
        _dynamodb().update_item(
            TableName=self.table,
            Key={"id": {"S": key}},
            UpdateExpression="SET #s = :done, completed_at = :now REMOVE lock_expires_at",
            ConditionExpression="#t = :token",
            ExpressionAttributeNames={"#s": "status", "#t": "token"},
            ExpressionAttributeValues={
                ":done": {"S": COMPLETED},
                ":now": {"N": str(int(self.clock()))},
                ":token": {"S": token},
            },
        )

    def release(self, key: str, token: str) -> None:
        client = _dynamodb()
        try:
            client.delete_item(
                TableName=self.table,
                Key={"id": {"S": key}},
                ConditionExpression="#t = :token",
                ExpressionAttributeNames={"#t": "token"},
                ExpressionAttributeValues={":token": {"S": token}},
            )
        except client.exceptions.ConditionalCheckFailedException:
            pass  # someone took over our timed-out lock: theirs now

    def __call__(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        @functools.wraps(fn)
        def guarded(record: Any) -> Any:
            key = record_key(self.consumer, record)
            token = self.claim(key)
            if token is None:
                return None  # a duplicate delivery of work already done
            try:
                result = fn(record)
            except BaseException:
                try:
                    self.release(key, token)
                except Exception:
                    pass  # the lock times out by itself; the original error matters more
                raise
            try:
                self.complete(key, token)
            except Exception as exc:
                # The effect happened; failing now would invite a second one after the lock
                # times out. Log it and report success.
                from .log import get_logger

                get_logger(consumer=self.consumer).error("idempotency_complete_failed", key=key, error=repr(exc))
            return result

        guarded.idempotency = self  # type: ignore[attr-defined]
        return guarded


def idempotent(consumer: str, **options: Any) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Decorator: run the wrapped ``handle_record`` at most once per ``(consumer, eventID)``."""
    return Idempotency(consumer, **options)
