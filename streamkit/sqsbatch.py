"""``SendMessageBatch`` done right: 10 entries and one payload limit per call, partial failures
retried, and every message that still did not make it handed back to the caller."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from .envelope import attributes_size

MAX_BATCH_ENTRIES = 10
DEFAULT_MAX_BATCH_BYTES = 262_144  # SQS's classic limit for one message and for one batch call
DEFAULT_PARTIAL_RETRIES = 2


def message_size(message: dict) -> int:
    """Bytes SQS counts for one entry: body plus attributes."""
    return len(message["MessageBody"].encode()) + attributes_size(message.get("MessageAttributes") or {})


def chunk_messages(messages: Iterable[dict], max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> Iterator[list[dict]]:
    """Group messages into calls of at most 10 entries and ``max_batch_bytes`` in total."""
    chunk: list[dict] = []
    size = 0
    for m in messages:
        s = message_size(m)
        if chunk and (len(chunk) == MAX_BATCH_ENTRIES or size + s > max_batch_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(m)
        size += s
    if chunk:
        yield chunk


def send_batch(
    client,
    queue_url: str,
    messages: list[dict],
    *,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    partial_retries: int = DEFAULT_PARTIAL_RETRIES,
    on_error: Callable[[dict, str], None] | None = None,
    on_sent: Callable[[dict, str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_call_error: Callable[[Exception], None] | None = None,
) -> list[dict]:
    """Send ``messages`` (dicts with ``Id``, ``MessageBody``, optional ``MessageAttributes``).

    Returns the messages that were NOT accepted, after retrying entries SQS reported as
    failed through no fault of the sender. A call that raises (after botocore's own
    retries) fails all its entries. ``on_error(message, reason)`` is told why, and
    ``on_call_error(exception)`` that the call itself failed (the service, not an entry);
    ``on_sent(message, message_id)`` hears of each accepted one (the ledger records it).
    """
    failed: list[dict] = []

    def fail(m: dict, reason: str) -> None:
        failed.append(m)
        if on_error is not None:
            on_error(m, reason)

    sendable = []
    for m in messages:
        if message_size(m) > max_batch_bytes:
            fail(m, f"message of {message_size(m)} bytes exceeds the {max_batch_bytes}-byte limit")
        else:
            sendable.append(m)

    for chunk in chunk_messages(sendable, max_batch_bytes):
        pending = chunk
        for attempt in range(partial_retries + 1):
            by_id = {m["Id"]: m for m in pending}
            try:
                resp = client.send_message_batch(QueueUrl=queue_url, Entries=pending)
            except Exception as exc:  # throttling/outage that botocore's retries did not absorb
                if on_call_error is not None:
                    on_call_error(exc)
                for m in pending:
                    fail(m, f"{type(exc).__name__}: {exc}")
                break
            retry = []
            if on_sent is not None:
                for ok in resp.get("Successful") or []:
                    if ok.get("Id") in by_id:
                        on_sent(by_id[ok["Id"]], ok.get("MessageId") or "")
            for f in resp.get("Failed") or []:
                entry = by_id.get(f.get("Id"))
                if entry is None:
                    continue
                reason = f"{f.get('Code')}: {f.get('Message', '')}"
                if f.get("SenderFault") or attempt == partial_retries:
                    fail(entry, reason)
                else:
                    retry.append(entry)
            # Entries neither successful nor failed (a malformed response) count as failed.
            answered = {s.get("Id") for s in resp.get("Successful") or []} | {
                f.get("Id") for f in resp.get("Failed") or []
            }
            for m in pending:
                if m["Id"] not in answered:
                    fail(m, "no result for this entry in the SendMessageBatch response")
            if not retry:
                break
            pending = retry
            sleep(0.05 * (2**attempt))
    return failed
