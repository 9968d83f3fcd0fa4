"""The operator API's view of the failure ledger (``streamkit.ledger``): counts, the record a
hard-fail consumer is blocked on, history, filters and the parked list.

Everything an operator sees of individual failures comes from here, never from a failure
queue: SQS has no peek, and a receive is not free (it raises the message's receive count
until the redrive policy moves it to parking). Reads are ``Query`` calls, cached for
``ttl_s`` (a page refreshing every few seconds reads the table a few times a minute); every
answer says when it was read. Nothing here raises: an error is reported in the answer.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from consumers.registry import stack_prefix
from streamkit.awsclient import ClientCache, describe_aws_error
from streamkit.ledger import BLOCKING_PREFIX, FAILURE_PREFIX, FAILURE_STATES, OPEN_STATES, STATE_INDEX, from_item
from streamkit.timefmt import now_iso

DEFAULT_TTL_S = 10.0
MAX_COUNT_PAGES = 20  # counting reads at most this many 1 MB pages per state; beyond: "at least"
MAX_LIST_PAGES = 10
LIST_LIMIT = 200


class CursorError(ValueError):
    """A ``cursor`` the API did not hand out."""


def ledger_table_name(env: Any = None) -> str:
    """``LEDGER_TABLE``, else the deployed name ``{SERVICE_NAME}-{STAGE}-failure-ledger``."""
    env = os.environ if env is None else env
    return env.get("LEDGER_TABLE") or f"{stack_prefix(env)}-failure-ledger"


def encode_cursor(key: dict | None) -> str | None:
    return None if not key else base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def decode_cursor(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, TypeError):
        raise CursorError("cursor is not one this API handed out") from None
    if not isinstance(key, dict) or not {"consumer", "id"} <= set(key):
        raise CursorError("cursor is not one this API handed out")
    return key


def shown(item: dict) -> dict:
    """A ledger item as the API returns it (what the page's rows and filters need)."""
    keep = ("id", "kind", "state", "capturedAt", "messageId", "errorType", "errorMessage", "eventName", "eventID",
            "keys", "keysText", "sequenceNumber", "changeOrder", "recordCreatedAt", "attempts", "parkReason",
            "settledBy", "settledNote", "updatedAt", "claimCheck", "lastFailedAt", "resolvedAt", "resolution",
            "functionName")
    return {k: item[k] for k in keep if k in item}


class LedgerView:
    def __init__(self, clients: ClientCache, table: str | None = None, *, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.clients, self.ttl_s, self.clock = clients, ttl_s, clock
        self.table = table or ledger_table_name()
        self._cache: dict[tuple, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        value = compute()
        with self._lock:
            self._cache[key] = (now, value)
        return value

    def invalidate(self, consumer: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[1] == consumer]:
                self._cache.pop(key, None)

    @property
    def ddb(self) -> Any:
        return self.clients.get("dynamodb")

    def _query(self, **kw: Any) -> tuple[list[dict], dict | None]:
        resp = self.ddb.query(TableName=self.table, **kw)
        return resp.get("Items") or [], resp.get("LastEvaluatedKey")

    # ---- counts ----------------------------------------------------------------------------------
    def summary(self, consumer: str) -> dict:
        """``{"counts": {state: n}, "byErrorType": {state: {type: n}}, "open", "oldestOpen",
        "blocking", "readAt", "error"?}`` of one consumer."""
        return self._cached(("summary", consumer), lambda: self._summary(consumer))

    def _summary(self, consumer: str) -> dict:
        out: dict[str, Any] = {"table": self.table, "readAt": now_iso(), "readEpoch": time.time(),
                               "counts": {}, "byErrorType": {}, "truncated": []}
        try:
            for state in FAILURE_STATES:
                counts, oldest, complete = self._count(consumer, state, by_type=state != "handled")
                out["counts"][state] = sum(counts.values())
                if state != "handled":
                    out["byErrorType"][state] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
                if oldest and state in OPEN_STATES:
                    out["oldestOpen"] = min(filter(None, (out.get("oldestOpen"), oldest)))
                if not complete:
                    out["truncated"].append(state)
            out["blocking"] = self._blocking(consumer)
        except Exception as exc:
            out["error"] = describe_aws_error(exc)
            return out
        open_types: dict[str, int] = {}
        for state in OPEN_STATES:
            for t, n in out["byErrorType"].get(state, {}).items():
                open_types[t] = open_types.get(t, 0) + n
        out["open"] = sum(out["counts"].get(s, 0) for s in OPEN_STATES)
        out["openByErrorType"] = dict(sorted(open_types.items(), key=lambda kv: (-kv[1], kv[0])))
        return out

    def _count(self, consumer: str, state: str, *, by_type: bool) -> tuple[dict[str, int], str | None, bool]:
        """(count per error type, oldest capture time, complete?) of one state, via the byState index."""
        counts: dict[str, int] = {}
        oldest: str | None = None
        start = None
        for _ in range(MAX_COUNT_PAGES):
            kw: dict[str, Any] = {"IndexName": STATE_INDEX, "KeyConditionExpression": "consumerState = :cs",
                                  "ExpressionAttributeValues": {":cs": {"S": f"{consumer}#{state}"}}}
            if by_type:
                kw.update(ProjectionExpression="errorType, capturedAt")
            else:
                kw.update(Select="COUNT")
            if start:
                kw["ExclusiveStartKey"] = start
            resp = self.ddb.query(TableName=self.table, **kw)
            if by_type:
                for item in resp.get("Items") or []:
                    t = (item.get("errorType") or {}).get("S") or "Unknown"
                    counts[t] = counts.get(t, 0) + 1
                    at = (item.get("capturedAt") or {}).get("S")
                    if at and (oldest is None or at < oldest):
                        oldest = at
            else:
                counts["*"] = counts.get("*", 0) + int(resp.get("Count") or 0)
            start = resp.get("LastEvaluatedKey")
            if not start:
                return counts, oldest, True
        return counts, oldest, False

    def _blocking(self, consumer: str) -> dict | None:
        """The record a hard-fail consumer is blocked on (the newest open one), else the last
        one it got past; None when it never blocked."""
        for state in ("blocked", "resolved"):
            items, _ = self._query(IndexName=STATE_INDEX, KeyConditionExpression="consumerState = :cs",
                                   ExpressionAttributeValues={":cs": {"S": f"{consumer}#{state}"}},
                                   ScanIndexForward=False, Limit=5)
            if items:
                newest = max((from_item(i) for i in items), key=lambda i: i.get("lastFailedAt") or "")
                return shown(newest)
        return None

    # ---- lists -----------------------------------------------------------------------------------
    def failures(self, consumer: str, *, state: str | None = None, error_type: str | None = None,
                 key: str | None = None, limit: int = 50, cursor: str | None = None) -> dict:
        """Failures newest first, filtered by state (the byState index), error type and a key
        fragment (matched in the keys' plain JSON); ``next`` continues the list."""
        start = decode_cursor(cursor)
        params = (consumer, state, error_type, key, limit, cursor)
        return self._cached(("failures", consumer, params), lambda: self._failures(
            consumer, state=state, error_type=error_type, key=key, limit=limit, start=start))

    def _failures(self, consumer: str, *, state: str | None, error_type: str | None, key: str | None,
                  limit: int, start: dict | None) -> dict:
        out: dict[str, Any] = {"consumer": consumer, "table": self.table, "readAt": now_iso(), "items": [],
                               "filters": {"state": state, "errorType": error_type, "key": key}, "next": None}
        values: dict[str, dict] = {}
        filters: list[str] = []
        if state:
            kw: dict[str, Any] = {"IndexName": STATE_INDEX, "KeyConditionExpression": "consumerState = :cs"}
            values[":cs"] = {"S": f"{consumer}#{state}"}
        else:
            kw = {"KeyConditionExpression": "consumer = :c AND begins_with(id, :f)"}
            values.update({":c": {"S": consumer}, ":f": {"S": FAILURE_PREFIX}})
        if error_type:
            filters.append("errorType = :t")
            values[":t"] = {"S": error_type}
        if key:
            filters.append("contains(keysText, :k)")
            values[":k"] = {"S": key}
        kw.update(ExpressionAttributeValues=values, ScanIndexForward=False)
        if filters:
            kw["FilterExpression"] = " AND ".join(filters)
        key_names = ("consumer", "id", "consumerState", "capturedAt") if state else ("consumer", "id")
        last: dict = {}
        try:
            for _ in range(MAX_LIST_PAGES):
                if start:
                    kw["ExclusiveStartKey"] = start
                kw["Limit"] = max(limit - len(out["items"]), 1) if not filters else 100
                items, start = self._query(**kw)
                for raw in items:
                    if len(out["items"]) >= limit:  # the next page starts right after the last one read
                        start = {k: last[k] for k in key_names if k in last}
                        break
                    last = raw
                    item = from_item(raw)
                    if not item.get("id", "").startswith(BLOCKING_PREFIX):
                        out["items"].append(shown(item))
                if len(out["items"]) >= limit or not start:
                    break
        except Exception as exc:
            out["error"] = describe_aws_error(exc)
            return out
        out["next"] = encode_cursor(start) if start else None
        return out


def read_age_s(answer: dict) -> float | None:
    """How old a cached answer is (seconds), from its ``readEpoch``."""
    at = answer.get("readEpoch")
    return None if at is None else round(max(0.0, time.time() - at), 1)

