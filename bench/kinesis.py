"""Per-record cost on Kinesis Data Streams for DynamoDB records: stream_handler against
Powertools ``BatchProcessor(EventType.KinesisDataStreams)`` with the same handler.

Both get the same event (1,000 Kinesis records of ~1 KB users, 1% failing) and do the same
work per record: decode ``kinesis.data`` (base64 + JSON), deserialize the keys and NewImage,
build a search document. Powertools has no view of a DynamoDB change inside Kinesis, so its
record handler wraps the decoded change in its own ``DynamoDBRecord`` (the deserialization
it uses for DynamoDB Streams events). For reference, streamkit on the same changes delivered
by DynamoDB Streams: the difference is the Kinesis decoding.
"""
from __future__ import annotations

import contextlib
import io

from .handler import our_handler
from .items import build_event, to_document
from .timing import interleaved_min

SIZES = (100, 1_000)
REPS = {100: 40, 1_000: 9}
DDB_REFERENCE = "streamkit, same changes from DynamoDB Streams"


def powertools_kinesis_handler():
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams)

    def record_handler(record):
        change = DynamoDBRecord(record.kinesis.data_as_json())  # the DynamoDB change inside Kinesis
        to_document(change.dynamodb.keys["user_id"], change.dynamodb.new_image)

    def handler(event, context=None):
        return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)

    return handler


def run() -> list[dict]:
    """Rows: per-record microseconds per contender and batch size, with streamkit's ratios."""
    from streamkit.testing import LambdaContext

    rows = []
    for n in SIZES:
        kinesis_event = build_event(n, source="kinesis")
        ddb_event = build_event(n)
        contenders = {
            "streamkit": (our_handler("soft-fail", None), kinesis_event),
            "Powertools BatchProcessor (KinesisDataStreams)": (powertools_kinesis_handler(), kinesis_event),
            DDB_REFERENCE: (our_handler("soft-fail", None), ddb_event),
        }
        calls = {}
        for name, (handler, event) in contenders.items():
            def once(handler=handler, event=event):
                with contextlib.redirect_stdout(io.StringIO()):
                    out = handler(event, LambdaContext(timeout_s=900))
                return out

            result = once()  # warm-up; and both report the same failures for retry or log them
            assert isinstance(result, dict), name
            calls[name] = once
        timings = {name: s / n * 1e6 for name, s in interleaved_min(calls, REPS[n]).items()}
        for name, us in timings.items():
            row = {"bench": "per-record cost, Kinesis", "batch": n, "contender": name, "us_per_record": us}
            if name == "streamkit":
                row["vs_powertools"] = us / timings["Powertools BatchProcessor (KinesisDataStreams)"]
                row["vs_dynamodb_source"] = us / timings[DDB_REFERENCE]
            rows.append(row)
    return rows
