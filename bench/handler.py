"""Per-record cost of stream_handler vs the naive loop and Powertools BatchProcessor."""
from __future__ import annotations

import contextlib
import io
import json
import os

from .items import build_event, to_document
from .timing import interleaved_min

SIZES = (100, 1_000, 10_000)
REPS = {100: 40, 1_000: 9, 10_000: 3}  # interleaved rounds; fewer for the big batch


def our_handler(policy: str, queue_url: str | None):
    from streamkit import stream_handler

    def handle_record(record):
        to_document(record.keys["user_id"], record.new_image)

    env = dict(os.environ, FAILURE_QUEUE_URL=queue_url or "")
    return stream_handler("bench", handle_record, policy=policy, env=env)


def naive_handler(policy: str, queue_url: str | None):
    """The article's loop, corrected to run: try/except per record, TypeDeserializer, one
    send_message per failure (soft-fail: log and move on)."""
    import boto3
    from boto3.dynamodb.types import TypeDeserializer

    deser = TypeDeserializer()
    sqs = boto3.client("sqs") if policy == "dlq-capture" else None

    def handle_record(record):
        image = {k: deser.deserialize(v) for k, v in record["dynamodb"]["NewImage"].items()}
        keys = {k: deser.deserialize(v) for k, v in record["dynamodb"]["Keys"].items()}
        to_document(keys["user_id"], image)

    def handler(event, context=None):
        for record in event.get("Records"):
            try:
                handle_record(record)
            except Exception as e:
                if sqs is not None:
                    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"record": record, "exception": str(e)}))
                else:
                    print(json.dumps({"level": "error", "error": str(e), "record": record["dynamodb"]["SequenceNumber"]}))
        return {}

    return handler


def powertools_handler(policy: str, queue_url: str | None):
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)

    def record_handler(record):
        image = record.dynamodb.new_image
        to_document(record.dynamodb.keys["user_id"], image)

    def handler(event, context=None):
        return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

    return handler


NO_FAILURES = "streamkit, no record failing"
CONTENDERS = {"streamkit": our_handler, "naive loop": naive_handler, "Powertools BatchProcessor": powertools_handler}


def run(queue_url_factory=None) -> list[dict]:
    """Rows: per-record microseconds per contender, policy and batch size."""
    from streamkit.testing import LambdaContext

    rows = []
    for policy in ("soft-fail", "dlq-capture"):
        for n in SIZES:
            event = build_event(n)
            calls = {}
            for name, factory in CONTENDERS.items():
                if name == "Powertools BatchProcessor" and policy == "dlq-capture":
                    continue  # Powertools has no capture: it reports failures (measured under soft-fail)
                queue_url = queue_url_factory() if (policy == "dlq-capture" and queue_url_factory) else None
                handler = factory(policy, queue_url)

                def once(handler=handler, event=event):
                    with contextlib.redirect_stdout(io.StringIO()):
                        handler(event, LambdaContext(timeout_s=900))

                once()  # warm-up: lazy clients, logger configuration, first-call caches
                calls[name] = once
                if name == "streamkit" and policy == "soft-fail":
                    # The same handler on a batch where nothing fails: shows the failure path's share.
                    clean = build_event(n, fail_every=0)

                    def once_clean(handler=handler, clean=clean):
                        handler(clean, LambdaContext(timeout_s=900))

                    calls[NO_FAILURES] = once_clean
            timings = {name: s / n * 1e6 for name, s in interleaved_min(calls, REPS[n]).items()}
            for name, us in timings.items():
                row = {"bench": "per-record cost", "policy": policy, "batch": n, "contender": name, "us_per_record": us}
                if name == "streamkit":
                    row["vs_naive"] = us / timings["naive loop"]
                    if "Powertools BatchProcessor" in timings:
                        row["vs_powertools"] = us / timings["Powertools BatchProcessor"]
                rows.append(row)
    return rows
