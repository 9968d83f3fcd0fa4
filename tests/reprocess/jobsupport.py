"""Helpers for the backfill and rewind tests: tables loaded fast, the index read back, handlers
that count (and kill), and the reprocess Lambda invoked in-process.

moto's Lambda needs Docker to run a function, so ``InProcessLambda`` stands in for the Lambda
*service*: a botocore ``before-send`` hook on ``lambda.Invoke`` hands the request's payload
to the real ``handlers.reprocess.handler`` on a thread (``InvocationType=Event``) and answers
202, as Lambda does. Everything else (the invoke call, S3 checkpoints, the continuation the
handler invokes itself) is the real code against moto.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

import boto3

from streamkit.testing import LambdaContext

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Radia", "Ken"]


def user_item(i: int, *, first: str | None = None, v2: bool = True, **extra: Any) -> dict:
    """``tests.support.users.user_item`` with five-digit ids (the 10,000-item table) and a
    few first names, so search results differ."""
    from tests.support.users import user_item as support_user_item

    return support_user_item(i, v2=v2, width=5, first=first or FIRST[i % len(FIRST)], **extra)


def load_table(table: str, items: list[dict]) -> None:
    """BatchWriteItem, 25 at a time (moto's put_item costs ~7 ms each)."""
    with boto3.resource("dynamodb").Table(table).batch_writer() as batch:
        for item in items:
            batch.put_item(Item=item)


def table_items(table: str) -> dict[str, dict]:
    t = boto3.resource("dynamodb").Table(table)
    out: dict[str, dict] = {}
    kwargs: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = t.scan(**kwargs)
        out.update({i["user_id"]: i for i in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def index_docs(search_url: str) -> dict[str, dict]:
    """Every live document of the SQLite index (tombstones left out)."""
    import sqlite3

    from consumers.sinks.sqlite_fts import path_from_url

    conn = sqlite3.connect(path_from_url(search_url))
    try:
        rows = conn.execute("SELECT id, doc, deleted FROM users_docs").fetchall()
    finally:
        conn.close()
    return {r[0]: json.loads(r[1]) for r in rows if not r[2]}


def index_matches_table(search_url: str, table: str) -> list[str]:
    """Differences between the index and the table (empty when index == table)."""
    from consumers.search_indexer import build_document

    docs, items = index_docs(search_url), table_items(table)
    problems = [f"missing {k}" for k in sorted(set(items) - set(docs))]
    problems += [f"extra {k}" for k in sorted(set(docs) - set(items))]
    for key in sorted(set(items) & set(docs)):
        want = build_document(items[key])
        got = {k: docs[key].get(k) for k in want}
        if got != {k: (str(v) if k == "user_id" else v) for k, v in want.items()}:
            problems.append(f"{key}: index {got} != table {want}")
    return problems


class CallLog:
    """Appends one line per ``handle_record`` call (keys and event) to a file: counts survive
    a killed process."""

    def __init__(self, path: str):
        self.path = path

    def lines(self) -> list[str]:
        try:
            with open(self.path) as f:
                return [line.rstrip("\n") for line in f]
        except FileNotFoundError:
            return []


class InProcessLambda:
    """Answers ``lambda.Invoke`` for the reprocess function by running its real handler here."""

    def __init__(self, function_name: str, *, context_factory=None, defer: bool = False):
        self.function_name = function_name
        self.defer = defer  # hold invocations until run_deferred() (a cancel before they start)
        self.deferred: list[dict] = []
        self.context_factory = context_factory or (lambda: LambdaContext(timeout_s=900, function_name=function_name))
        self.events: list[dict] = []
        self.results: list[dict] = []
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._session = boto3._get_default_session()

    def __enter__(self) -> InProcessLambda:
        self._session.events.register("before-send.lambda.Invoke", self._on_invoke)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.join()
        self._session.events.unregister("before-send.lambda.Invoke", self._on_invoke)

    def _on_invoke(self, request: Any, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        target = request.url.split("/functions/")[1].split("/")[0]
        from urllib.parse import unquote

        target = unquote(target)
        if not (target == self.function_name or target.endswith(":" + self.function_name)):
            return None  # not ours: let moto answer
        payload = json.loads(request.body or b"{}")
        with self._lock:
            self.events.append(payload)
            if self.defer:
                self.deferred.append(payload)
        if not self.defer:
            self._start(payload)
        return AWSResponse(request.url, 202, {"x-amzn-requestid": uuid.uuid4().hex}, _Raw(b""))

    def _start(self, payload: dict) -> None:
        thread = threading.Thread(target=self._run, args=(payload,), daemon=True)
        with self._lock:
            self.threads.append(thread)
        thread.start()

    def take_deferred(self) -> list[dict]:
        """The invocations held so far (they will not run)."""
        with self._lock:
            held, self.deferred = self.deferred, []
        return held

    def run_deferred(self) -> None:
        with self._lock:
            pending, self.deferred, self.defer = self.deferred, [], False
        for payload in pending:
            self._start(payload)
        self.join()

    def _run(self, payload: dict) -> None:
        from handlers import reprocess as fn

        try:
            result = fn.handler(payload, self.context_factory())
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            with self._lock:
                self.errors.append(exc)
            return
        with self._lock:
            self.results.append(result)

    def join(self, timeout_s: float = 300) -> None:
        while True:
            with self._lock:
                alive = [t for t in self.threads if t.is_alive()]
            if not alive:
                return
            for t in alive:
                t.join(timeout_s)


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_: Any):
        yield self._body


def env_for_cli(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(extra)
    return env
