"""At most once per ``(consumer, eventID)``: a claim in DynamoDB around a side effect that has
no idempotency key of its own (a Slack incoming-webhook post).

Redelivery is normal (whole-batch retries, timeouts, reprocessing), and a network failure
does not say whether the receiver acted. So the rule is at most once, with every send whose
outcome is unknown counted where a person sees it:

1. **claim** right before the send: put ``status=IN_PROGRESS``, ``claimed_at=T`` (the send
   starts at T), ``lock_expires_at=T+lock timeout`` and a random ``token``, on condition that
   no item exists or its 30-day expiry has passed (TTL deletion is lazy).
2. **send**, then at once, before anything else, **complete**: ``status=COMPLETED``.
3. The send failed:
   * **provably before the receiver could act** (``not_sent(exc)``: the consumer marks
     connect refused, DNS failure, an answer refusing the request such as 429 or 400 with
     ``mark_not_sent``): delete our claim and re-raise; a retry may send.
   * **anything else** (read timeout, connection reset after sending, a 5xx, an unexpected
     exception): the send may have happened. The claim is completed with ``doubtful=<why>``,
     logged (``doubtful_send``), counted (metric ``doubtful_sends``) and the call returns as
     done: no retry.

A claim that finds ``COMPLETED`` is a duplicate: done, nothing sent. One that finds a live
``IN_PROGRESS`` raises ``TransientError`` (another invocation is sending right now). One
that finds an ``IN_PROGRESS`` past its lock timeout is a sender that died, or whose
completion could not be written, after the send may have started: it is marked
``COMPLETED`` (doubtful) and counted, and **never sent again**.

Table (``IDEMPOTENCY_TABLE``): partition key ``id`` (S) = ``"<consumer>#<eventID>"``, TTL
attribute ``expires_at`` (epoch seconds). Expiry defaults to 30 days, longer than the failure
queue's 14-day retention, so a record replayed from the queue is still guarded. The lock
timeout (``IDEMPOTENCY_LOCK_TIMEOUT_S``, default 60 s) must exceed one send (its client
timeout); it only decides how long a redelivery waits before giving an unfinished claim up
as doubtful.
"""
from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .awsclient import make_client
from .errors import TransientError
from .settings import Setting

TABLE_ENV = "IDEMPOTENCY_TABLE"
DEFAULT_EXPIRY_S = 30 * 24 * 3600
IDEMPOTENCY_TABLE = Setting(
    TABLE_ENV, "DynamoDB table of the at-most-once guard (slack-notifier) and of the change_order applied per "
    "item (crm-sync, streamkit.orderguard): partition key 'id' (S), TTL attribute 'expires_at'",
    required=True,
)
IDEMPOTENCY_LOCK_TIMEOUT_S = Setting(
    "IDEMPOTENCY_LOCK_TIMEOUT_S",
    "after how long an unfinished IN_PROGRESS claim is given up as a doubtful send (never re-sent); "
    "more than one send's client timeout",
    parse=int, default=60, low=1, high=3_600,
)
# A consumer that guards its sends with ``Idempotency`` lists these in its SETTINGS.
SETTINGS = (IDEMPOTENCY_TABLE, IDEMPOTENCY_LOCK_TIMEOUT_S)
DEFAULT_LOCK_TIMEOUT_S: int = IDEMPOTENCY_LOCK_TIMEOUT_S.default
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
DOUBTFUL_METRIC = "doubtful_sends"


_client: Any = None  # a boto3 DynamoDB client (untyped)
_client_endpoint: str | None = None
_client_lock = threading.Lock()


def _dynamodb():
    """One boto3 client per process and AWS_ENDPOINT_URL, created on first use.

    Locked: the reprocess worker calls consumers from a thread pool, and creating clients
    on boto3's default session from several threads at once is not safe. ``make_client``'s
    timeouts and standard retries, like every client of ours.
    """
    global _client, _client_endpoint
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    client = _client
    if client is not None and endpoint == _client_endpoint:
        return client
    with _client_lock:
        if _client is None or endpoint != _client_endpoint:
            _client, _client_endpoint = make_client("dynamodb"), endpoint
        return _client


def reset_client() -> None:
    """Forget the cached client."""
    global _client
    _client = None


def mark_not_sent[E: BaseException](exc: E) -> E:
    """Say that ``exc`` proves the request never reached the receiver (so a retry may send)."""
    exc.not_sent = True  # type: ignore[attr-defined]
    return exc


def not_sent(exc: BaseException) -> bool:
    """True only for failures marked with ``mark_not_sent``; every other failure is doubtful."""
    return getattr(exc, "not_sent", False) is True


def record_key(consumer: str, record: Any) -> str:
    """``"<consumer>#<eventID>"``; without an eventID, the stream ARN and sequence number."""
    event_id = getattr(record, "event_id", None)
    if not event_id:
        event_id = f"{getattr(record, 'source_arn', '') or ''}:{record.sequence_number}"
    return f"{consumer}#{event_id}"


class Idempotency:
    """The guard for one consumer; see the module docstring for the rule."""

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
        return self._table or IDEMPOTENCY_TABLE.require(owner=self.consumer)

    @property
    def lock_timeout_s(self) -> int:
        if self._lock_timeout_s is not None:
            return self._lock_timeout_s
        return IDEMPOTENCY_LOCK_TIMEOUT_S.read()  # parsed once per distinct value, not per record

    # --- the protocol ---------------------------------------------------------------------
    def claim(self, key: str) -> str | None:
        """Take the claim: a token, or ``None`` when the send is done (or doubtful-done)."""
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
                    "claimed_at": {"N": str(now)},
                    "lock_expires_at": {"N": str(now + self.lock_timeout_s)},
                    "expires_at": {"N": str(now + self.expiry_s)},
                    "consumer": {"S": self.consumer},
                },
                ConditionExpression="attribute_not_exists(id) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return token
        except client.exceptions.ConditionalCheckFailedException as exc:
            item = exc.response.get("Item")  # the blocking item, without a second call
        if item is None:
            item = client.get_item(TableName=self.table, Key={"id": {"S": key}}, ConsistentRead=True).get("Item") or {}
        status = item.get("status", {}).get("S")
        if status != IN_PROGRESS:
            return None  # COMPLETED: a duplicate delivery of a send already done
        lock_left = int(item.get("lock_expires_at", {}).get("N", now)) - now
        if lock_left > 0:
            raise TransientError(f"{key} is being processed by another invocation", retry_after=min(lock_left, 5))
        claimed_at = item.get("claimed_at", {}).get("N")
        self._abandoned(key, item.get("token", {}).get("S"), claimed_at)
        return None

    def complete(self, key: str, token: str, *, doubtful: str | None = None) -> None:
        """Mark the send done (``doubtful``: why its outcome is unknown)."""
        names = {"#s": "status", "#t": "token"}
        values = {
            ":done": {"S": COMPLETED},
            ":now": {"N": str(int(self.clock()))},
            ":token": {"S": token},
        }
        update = "SET #s = :done, completed_at = :now"
        if doubtful is not None:
            update += ", doubtful = :why"
            values[":why"] = {"S": doubtful[:500]}
        _dynamodb().update_item(
            TableName=self.table,
            Key={"id": {"S": key}},
            UpdateExpression=update + " REMOVE lock_expires_at",
            ConditionExpression="#t = :token",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def release(self, key: str, token: str) -> None:
        """Delete our claim: the send provably did not happen, a retry may send."""
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
            pass  # no longer ours (given up as doubtful by another invocation): leave it

    def once(self, key: str, send: Callable[[], Any]) -> Any:
        """``send()`` at most once for ``key``; ``None`` when it was done (or doubtful) before.

        Raises what ``send`` raised only when it is marked ``not_sent`` (the claim is released
        first), and what the claim itself raised (nothing was sent).
        """
        token = self.claim(key)
        if token is None:
            return None
        try:
            result = send()
        except BaseException as exc:
            if not_sent(exc):
                try:
                    self.release(key, token)
                except Exception:
                    pass  # the claim stays IN_PROGRESS: given up as doubtful after the lock timeout
                raise
            self._doubtful(key, token, exc)
            if not isinstance(exc, Exception):
                raise  # the process is going down (timeout, interrupt): let it, the claim says doubtful
            return None
        try:
            self.complete(key, token)
        except Exception as exc:
            # The send happened. Failing the record now would not bring a second send (the
            # claim stays IN_PROGRESS and is given up as doubtful, never re-sent), but it
            # would make a soft-fail count it as dropped: it is not. Log and report success.
            self._log().error("idempotency_complete_failed", key=key, error=repr(exc))
        return result

    # --- doubtful outcomes ------------------------------------------------------------------
    def _doubtful(self, key: str, token: str, exc: BaseException) -> None:
        why = f"{type(exc).__name__}: {exc}"
        try:
            self.complete(key, token, doubtful=why)
        except Exception as err:  # stays IN_PROGRESS: never re-sent either (see claim)
            self._log().error("idempotency_complete_failed", key=key, error=repr(err))
        self._count_doubtful(key, why, exc)

    def _abandoned(self, key: str, old_token: str | None, claimed_at: str | None) -> None:
        """An IN_PROGRESS claim past its lock: the sender died or could not record its outcome."""
        why = f"claim taken at {claimed_at or '?'} never completed (sender died or could not record the outcome)"
        if old_token:
            client = _dynamodb()
            try:
                self.complete(key, old_token, doubtful=why)
            except client.exceptions.ConditionalCheckFailedException:
                return  # someone else resolved it first (and counted it)
            except Exception as err:
                self._log().error("idempotency_complete_failed", key=key, error=repr(err))
        self._count_doubtful(key, why, None)

    def _count_doubtful(self, key: str, why: str, exc: BaseException | None) -> None:
        self._log().warning(
            "doubtful_send",
            key=key,
            reason=why[:500],
            rule="counted as sent, not retried: a second send could duplicate it",
            exc_info=exc,
        )
        try:
            from .metrics import count_now

            count_now(self.consumer, DOUBTFUL_METRIC)
        except Exception as err:  # a metric must never turn into a failure (and a re-send)
            self._log().error("metric_failed", metric=DOUBTFUL_METRIC, error=repr(err))

    def _log(self) -> Any:
        from .log import get_logger

        return get_logger(consumer=self.consumer, component="idempotency")

    def __call__(self, send: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Decorator form: ``send(record)`` is the send itself (do anything that may fail
        before the send outside it, or mark it ``not_sent``: other failures count as sent)."""

        @functools.wraps(send)
        def guarded(record: Any) -> Any:
            return self.once(record_key(self.consumer, record), lambda: send(record))

        guarded.idempotency = self  # type: ignore[attr-defined]
        return guarded


def idempotent(consumer: str, **options: Any) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Decorator: run the wrapped send at most once per ``(consumer, eventID)``."""
    return Idempotency(consumer, **options)
