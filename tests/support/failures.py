"""Failure envelopes as the dlq-capture policy writes them, and sending them to a queue."""
from __future__ import annotations

from typing import Any

import boto3

from streamkit.envelope import build_envelope, dumps, message_attributes
from streamkit.sqsbatch import send_batch


def envelope(record: dict, consumer: str = "search-indexer", *, error_type: str = "KeyError",
             message: str = "'fullname'", attempts: int = 1, **kw: Any) -> dict:
    """The envelope of ``record`` failed with ``error_type: message`` (the v1 code's KeyError
    by default) in the consumer's deployed function; ``kw`` goes to ``build_envelope``."""
    return build_envelope(
        consumer=consumer,
        record=record,
        error={"type": error_type, "message": message, "traceback": "Traceback ..."},
        attempts=attempts,
        function_name=f"userstream-dev-{consumer}",
        request_id="req-1",
        **kw,
    )


def send_bodies(queue_url: str, bodies: list[str], error_type: str = "KeyError", consumer: str = "search-indexer") -> None:
    """Send message bodies with the attributes a capture sets (``consumer``, ``errorType``)."""
    _send(queue_url, [(b, message_attributes(consumer, error_type)) for b in bodies])


def capture(queue_url: str, envelopes: list[dict]) -> None:
    """Put ``envelopes`` in the queue as the dlq-capture policy does, attributes included."""
    _send(queue_url, [(dumps(e), message_attributes(e["consumer"], e["error"]["type"])) for e in envelopes])


def _send(queue_url: str, messages: list[tuple[str, dict]]) -> None:
    entries = [{"Id": str(i), "MessageBody": body, "MessageAttributes": attrs} for i, (body, attrs) in enumerate(messages)]
    assert send_batch(boto3.client("sqs"), queue_url, entries, max_batch_bytes=1_048_576) == []
