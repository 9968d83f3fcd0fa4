"""Per-record cost of ``stream_handler`` against the naive loop and Powertools ``BatchProcessor``.

Every contender runs the same handler and gets a freshly parsed event on every call (the
JSON text is parsed before the call, untimed; the event is dropped after it, untimed), as
the Lambda runtime hands one over. Contenders take turns (``timing.interleaved``).

* ``naive loop``: the article's try/except loop, corrected to run: boto3's
  ``TypeDeserializer`` over ``Keys`` and ``NewImage``; on failure it prints one JSON line
  (soft-fail), stops and reports the rest (hard-fail), or calls ``SendMessage`` (dlq-capture,
  client made at cold start);
* ``Powertools``: ``BatchProcessor`` with ``process_partial_response`` (it reports failed
  records for retry; on DynamoDB ``record.dynamodb.new_image`` decodes the whole image; on
  Kinesis the handler decodes ``data`` and the image with ``TypeDeserializer``). It neither
  logs nor captures failures, and raises when every record failed (caught here);
* ``streamkit``: ``stream_handler`` with the policy of the row (EMF document included).

Output goes to a null sink for every contender.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from typing import Any

from .items import SHAPES, event_text, to_document, whole_document
from .timing import CPU, Stats, interleaved

# (shape, batch size): a small batch (per-invocation costs count) and a large one, both
# within Lambda's 6 MB payload (the payload of each row is printed with it).
HAPPY_ROWS = (("200 B", 50), ("200 B", 5_000), ("2.5 KB", 100), ("2.5 KB", 1_000), ("20 KB", 25), ("20 KB", 250))
# The same shapes at 1% failing (issue 16's "0-1%"): batches of 100 (one failure, logged with its
# traceback as the first of its type, and the summary line), 3-field handler.
ONE_PERCENT_ROWS = (("200 B", 100), ("2.5 KB", 100), ("20 KB", 100))
FAIL_BATCH = ("200 B", 100)
FAIL_RATES = (0, 10, 50, 100)
KINESIS_ROWS = (("2.5 KB", 100), ("2.5 KB", 1_000))
QUICK = bool(os.environ.get("BENCH_QUICK"))  # a smoke run of the bench code itself: few rows, few rounds
if QUICK:
    HAPPY_ROWS, FAIL_RATES, KINESIS_ROWS = (("200 B", 50), ("20 KB", 25)), (0, 50), (("2.5 KB", 100),)
    ONE_PERCENT_ROWS = (("200 B", 100),)
WORKLOADS: dict[str, Callable[[str, Any], dict]] = {"3 fields": to_document, "whole item": whole_document}


def _rounds(n_records: int, shape: str) -> int:
    if QUICK:
        return 3
    weight = n_records * {"200 B": 1, "2.5 KB": 8, "20 KB": 60}[shape]
    return 41 if weight <= 2_000 else 15 if weight <= 20_000 else 9


def _fail_every(rate: int) -> int:
    return {0: 0, 1: 100, 10: 10, 50: 2, 100: 1}[rate]


class _Null(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def _quiet(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call(event: Any) -> Any:
        with contextlib.redirect_stdout(_Null()):
            return fn(event)

    call.raw = fn  # type: ignore[attr-defined]  # without the redirect (the memory measure)
    return call


def streamkit_handler(policy: str, workload: str, queue_url: str | None = None):
    from streamkit import stream_handler
    from streamkit.testing import LambdaContext

    work = WORKLOADS[workload]

    def handle_record(record):
        work(record.keys["user_id"], record.new_image)

    handler = stream_handler("bench", handle_record, policy=policy,
                             env=dict(os.environ, FAILURE_QUEUE_URL=queue_url or ""))
    context = LambdaContext(timeout_s=24 * 3600)  # Lambda hands one in; making it is not the handler's work
    call = _quiet(lambda event: handler(event, context))
    call.loop = handler.loop  # type: ignore[attr-defined]  # the bench points captures at a fresh queue
    return call


def naive_handler(policy: str, workload: str, queue_url: str | None = None, source: str = "dynamodb"):
    import base64

    import boto3
    from boto3.dynamodb.types import TypeDeserializer

    deser = TypeDeserializer()
    work = WORKLOADS[workload]
    sqs = boto3.client("sqs") if policy == "dlq-capture" else None
    target = {"queue_url": queue_url}

    def handle_record(record):
        ddb = record["dynamodb"] if source == "dynamodb" else json.loads(base64.b64decode(record["kinesis"]["data"]))["dynamodb"]
        image = {k: deser.deserialize(v) for k, v in ddb["NewImage"].items()}
        keys = {k: deser.deserialize(v) for k, v in ddb["Keys"].items()}
        work(keys["user_id"], image)

    def seq(record):
        return record["dynamodb"]["SequenceNumber"] if source == "dynamodb" else record["kinesis"]["sequenceNumber"]

    def handler(event):
        records = event.get("Records")
        for i, record in enumerate(records):
            try:
                handle_record(record)
            except Exception as e:
                if policy == "hard-fail":
                    return {"batchItemFailures": [{"itemIdentifier": seq(r)} for r in records[i:]]}
                if sqs is not None:
                    sqs.send_message(QueueUrl=target["queue_url"],
                                     MessageBody=json.dumps({"record": record, "exception": str(e)}))
                else:
                    print(json.dumps({"level": "error", "error": str(e), "record": seq(record)}))
        return {"batchItemFailures": []}

    call = _quiet(handler)
    call.target = target  # type: ignore[attr-defined]
    return call


def powertools_handler(workload: str, source: str = "dynamodb"):
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    work = WORKLOADS[workload]
    if source == "dynamodb":
        processor = BatchProcessor(event_type=EventType.DynamoDBStreams)

        def record_handler(record):
            work(record.dynamodb.keys["user_id"], record.dynamodb.new_image)
    else:
        from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

        def record_handler(record):  # the change inside Kinesis, in Powertools' own DynamoDB view
            change = DynamoDBRecord(record.kinesis.data_as_json())
            work(change.dynamodb.keys["user_id"], change.dynamodb.new_image)

    def handler(event):
        try:
            return process_partial_response(event=event, record_handler=record_handler, processor=processor)
        except BatchProcessingError:  # every record failed: Powertools fails the invocation
            return None

    return _quiet(handler)


def _row(section: str, stats: dict[str, Stats], n: int, **fields) -> list[dict]:
    rows = []
    naive = stats.get("naive loop")
    pt = stats.get("Powertools")
    for name, s in stats.items():
        row = {"section": section, "contender": name, "us": Stats(s.min / n * 1e6, s.median / n * 1e6), **fields}
        if name == "streamkit":
            if naive:
                row["vs_naive"] = s.ratio(naive)
            if pt:
                row["vs_powertools"] = s.ratio(pt)
        rows.append(row)
    return rows


def happy_path() -> list[dict]:
    rows = []
    cases = [(shape, n, 0, workload) for shape, n in HAPPY_ROWS for workload in WORKLOADS]
    cases += [(shape, n, 1, "3 fields") for shape, n in ONE_PERCENT_ROWS]
    for shape, n, failing, workload in cases:
        text = event_text(n, shape, fail_every=_fail_every(failing))
        mb = len(text) / 1_048_576
        calls = {
            "streamkit": streamkit_handler("soft-fail", workload),
            "naive loop": naive_handler("soft-fail", workload),
            "Powertools": powertools_handler(workload),
        }
        for fn in calls.values():  # warm-up: lazy imports, first-call caches
            fn(json.loads(text))
        stats = interleaved(calls, _rounds(n, shape), setup=lambda text=text: json.loads(text))
        rows += _row("happy", stats, n, shape=shape, batch=n, payload_mb=mb, workload=workload, failing=failing)
    return rows


def failure_path(queue_factory: Callable[[], str]) -> list[dict]:
    import boto3

    sqs = boto3.client("sqs")
    rows = []
    shape, n = FAIL_BATCH
    for policy in ("soft-fail", "hard-fail", "dlq-capture"):
        for rate in FAIL_RATES:
            text = event_text(n, shape, fail_every=_fail_every(rate))
            queues = [queue_factory(), queue_factory()] if policy == "dlq-capture" else [None, None]
            calls = {
                "streamkit": streamkit_handler(policy, "3 fields", queues[0]),
                "naive loop": naive_handler(policy, "3 fields", queues[1]),
                "Powertools": powertools_handler("3 fields"),
            }
            for fn in calls.values():
                fn(json.loads(text))

            def fresh(calls=calls, text=text, policy=policy):
                # Captures would pile up on moto, and its sends slow down as a queue grows: every
                # call gets empty queues (made here, untimed; PurgeQueue allows one call a minute).
                if policy == "dlq-capture":
                    capture = calls["streamkit"].loop.policy.capture
                    for old in (capture.queue_url, calls["naive loop"].target["queue_url"]):
                        sqs.delete_queue(QueueUrl=old)
                    capture.queue_url = queue_factory()
                    calls["naive loop"].target["queue_url"] = queue_factory()
                return json.loads(text)

            stats = interleaved(calls, 3 if QUICK else 15, setup=fresh)
            rows += _row("failure", stats, n, shape=shape, batch=n, policy=policy, failing=rate,
                         payload_mb=len(text) / 1_048_576)
    return rows


DDB_REFERENCE = "streamkit, same changes from DynamoDB Streams"


def kinesis() -> list[dict]:
    from .items import kinesis_event_text

    rows = []
    for shape, n in KINESIS_ROWS:
        texts = {"kinesis": kinesis_event_text(n, shape), "dynamodb": event_text(n, shape)}
        text = texts["kinesis"]
        streamkit = streamkit_handler("soft-fail", "3 fields")
        calls = {
            "streamkit": streamkit,
            "naive loop": naive_handler("soft-fail", "3 fields", source="kinesis"),
            "Powertools": powertools_handler("3 fields", source="kinesis"),
            # the reference: what the Kinesis decoding costs (Lambda parsed DynamoDB Streams changes untimed)
            DDB_REFERENCE: lambda pair, fn=streamkit: fn(pair[1]),
        }
        for name, fn in calls.items():
            fn((json.loads(texts["kinesis"]), json.loads(texts["dynamodb"])) if name == DDB_REFERENCE
               else json.loads(text))
        plain = {name: fn for name, fn in calls.items() if name != DDB_REFERENCE}
        wrapped = {name: (lambda pair, fn=fn: fn(pair[0])) for name, fn in plain.items()}
        wrapped[DDB_REFERENCE] = calls[DDB_REFERENCE]
        stats = interleaved(wrapped, _rounds(n, shape), clock=CPU,  # rounds of 0.4-4 MB events: see timing.CPU
                            setup=lambda texts=texts: (json.loads(texts["kinesis"]), json.loads(texts["dynamodb"])))
        rows += _row("kinesis", stats, n, shape=shape, batch=n, payload_mb=len(text) / 1_048_576, workload="3 fields")
    return rows


def _held(fn: Callable[[Any], Any], text: str) -> tuple[int, int]:
    """(bytes still allocated, objects left in reference cycles) after ``fn`` handled a freshly
    parsed event and the event was dropped. Free lists are emptied first (``gc.collect``), so
    allocations that are only cached for reuse do not count; ``tracemalloc`` window."""
    import gc
    import tracemalloc

    with contextlib.redirect_stdout(_Null()):  # the harness allocates outside the window
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            event = json.loads(text)
            fn(event)
            del event
            gc.set_debug(gc.DEBUG_SAVEALL)  # what only the collector would free: kept in gc.garbage
            gc.collect()
            gc.set_debug(0)
            cyclic = len(gc.garbage)
            gc.garbage.clear()
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    return held, cyclic


def memory_held() -> list[dict]:
    """What an invocation leaves allocated for the next one, against a call that does nothing
    with the same freshly parsed event (``json.loads`` itself keeps a little)."""
    rows = []
    largest = {shape: max(n for s, n in HAPPY_ROWS if s == shape) for shape, _ in HAPPY_ROWS}
    for shape, n in largest.items():
        text = event_text(n, shape, fail_every=100)
        baseline, _ = _held(lambda event: None, text)
        for name, quiet in (("streamkit", streamkit_handler("soft-fail", "3 fields")),
                            ("naive loop", naive_handler("soft-fail", "3 fields")),
                            ("Powertools", powertools_handler("3 fields"))):
            quiet(json.loads(text))
            quiet(json.loads(text))
            held, cyclic = _held(quiet.raw, text)
            rows.append({"section": "memory", "contender": name, "shape": shape, "batch": n,
                         "payload_mb": len(text) / 1_048_576, "held_bytes": max(0, held - baseline),
                         "cyclic_objects": cyclic})
    return rows


def run(queue_factory: Callable[[], str]) -> list[dict]:
    return happy_path() + failure_path(queue_factory) + kinesis() + memory_held()


__all__ = ["run", "SHAPES"]
