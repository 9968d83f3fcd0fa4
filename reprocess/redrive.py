"""Redrive parked messages: move them from a consumer's parking queue back to its failure
queue, so the next drain gives each one more try (after the fix a person made).

The one place that receives from a parking queue, deliberately: a message is deleted from
parking only after its copy was accepted by the failure queue (a crash in between leaves a
duplicate, never a loss). The copy is the parked body without its ``parked`` note (an
envelope keeps its attempts: one more failure parks it again); Lambda's on-failure records and
malformed bodies move byte for byte with their ``ledgerId``. The ledger item goes back to
``retrying`` (``captured`` if it was never tried), naming the job and the new message.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consumers.registry import get_consumer
from streamkit.awsclient import describe_aws_error
from streamkit.envelope import EnvelopeError, dumps, parse_envelope
from streamkit.ledger import Ledger, message_failure_id
from streamkit.sqsbatch import send_batch
from streamkit.timefmt import iso_from_ms

from .settle import LEDGER_ID_ATTRIBUTE, MAX_MESSAGE_BYTES, PARK_REASON_ATTRIBUTE
from .summary import EXIT_FAILURES, EXIT_OK

VISIBILITY_S = 60  # a message being moved is hidden this long if the run dies mid-way


@dataclass
class RedriveSummary:
    """``taken == moved + left`` always: each message received is moved or left in parking."""

    consumer: str
    parking_queue_url: str | None
    queue_url: str | None
    taken: int = 0
    moved: int = 0
    left: int = 0
    ledger_write_failures: int = 0
    by_error_type: dict[str, int] = field(default_factory=dict)
    stopped_by: str | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURES if self.left else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {"consumer": self.consumer, "kind": "redrive", "parking_queue_url": self.parking_queue_url,
                "queue_url": self.queue_url, "taken": self.taken, "moved": self.moved, "left": self.left,
                "ledger_write_failures": self.ledger_write_failures, "by_error_type": dict(self.by_error_type),
                "stopped_by": self.stopped_by, "duration_s": round(self.duration_s, 3),
                "exit_code": self.exit_code, "notes": list(self.notes)}


def _copy(message: dict, consumer: str) -> tuple[dict, dict | None, str]:
    """(SQS entry body+attributes, the envelope or None, error type) of a parked message."""
    body = message.get("Body", "")
    attrs = {k: v for k, v in (message.get("MessageAttributes") or {}).items() if k != PARK_REASON_ATTRIBUTE}
    try:
        env = parse_envelope(body)
    except EnvelopeError:
        env = None
    if env is not None and env.consumer == consumer:
        data = {k: v for k, v in env.body.items() if k != "parked"}
        return {"MessageBody": dumps(data), "MessageAttributes": attrs}, data, (env.error or {}).get("type") or "Unknown"
    if LEDGER_ID_ATTRIBUTE not in attrs:  # a parked body from before the ledger: name its item now
        sent = iso_from_ms((message.get("Attributes") or {}).get("SentTimestamp"))
        attrs[LEDGER_ID_ATTRIBUTE] = {"DataType": "String",
                                      "StringValue": message_failure_id(message["MessageId"], sent)}
    error_type = (attrs.get("errorType") or {}).get("StringValue") or "malformed"
    return {"MessageBody": body, "MessageAttributes": attrs}, None, error_type


def redrive_parked(consumer: str, *, max_messages: int | None = None, sqs: Any = None, ledger: Ledger | None = None,
                   job_id: str | None = None, progress: Callable[[RedriveSummary], None] | None = None,
                   should_stop: Callable[[], str | None] | None = None, wait_time_s: int = 0) -> RedriveSummary:
    """Move up to ``max_messages`` (all when None) parked messages of ``consumer`` back to its
    failure queue; always returns."""
    from streamkit.awsclient import make_client

    started = time.monotonic()
    spec = get_consumer(consumer)
    sqs = sqs or make_client("sqs", max_attempts=4, read_timeout=30)
    parking = spec.resolve_queue_url(sqs, "parking")
    failures = spec.resolve_queue_url(sqs, "failures")
    summary = RedriveSummary(consumer, parking, failures)
    if parking is None or failures is None:
        missing = spec.queue_name("parking" if parking is None else "failures")
        summary.stopped_by = f"queue {missing} does not exist"
        summary.notes.append(summary.stopped_by)
        return summary
    seen: set[str] = set()
    settled_by = f"job {job_id}" if job_id else "redrive"
    try:
        while True:
            stop = should_stop() if should_stop is not None else None
            if stop:
                summary.stopped_by = stop
                break
            if max_messages is not None and summary.taken >= max_messages:
                summary.stopped_by = f"max {max_messages} messages moved or tried"
                break
            want = 10 if max_messages is None else max(1, min(10, max_messages - summary.taken))
            try:
                messages = sqs.receive_message(QueueUrl=parking, MaxNumberOfMessages=want, WaitTimeSeconds=wait_time_s,
                                               VisibilityTimeout=VISIBILITY_S, AttributeNames=["All"],
                                               MessageAttributeNames=["All"]).get("Messages") or []
            except Exception as exc:
                summary.stopped_by = f"could not receive from parking: {describe_aws_error(exc)}"
                break
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                summary.stopped_by = "parking queue empty" if not messages else "every message received was already tried"
                break
            _move_round(sqs, failures, parking, consumer, fresh, summary, ledger, settled_by, seen)
            if progress is not None:
                progress(summary)
    finally:
        summary.duration_s = time.monotonic() - started
    return summary


def _move_round(sqs: Any, failures: str, parking: str, consumer: str, messages: list[dict], summary: RedriveSummary,
                ledger: Ledger | None, settled_by: str, seen: set[str]) -> None:
    entries, meta = [], {}
    for i, m in enumerate(messages):
        seen.add(m["MessageId"])
        summary.taken += 1
        copy, env, error_type = _copy(m, consumer)
        entries.append({"Id": str(i), **copy})
        meta[str(i)] = (m, env, error_type, copy)
    sent_ids: dict[str, str] = {}
    reasons: dict[str, str] = {}
    refused = {e["Id"] for e in send_batch(sqs, failures, entries, max_batch_bytes=MAX_MESSAGE_BYTES,
                                           on_error=lambda e, r: reasons.__setitem__(e["Id"], r),
                                           on_sent=lambda e, mid: sent_ids.__setitem__(e["Id"], mid))}
    to_delete = []
    for entry_id, (m, env, error_type, copy) in meta.items():
        if entry_id in refused:
            summary.left += 1
            note = f"left in parking, the failure queue refused it: {reasons.get(entry_id, '')}"[:300]
            if note not in summary.notes:
                summary.notes.append(note)
            _release(sqs, parking, m)
            continue
        summary.moved += 1
        summary.by_error_type[error_type] = summary.by_error_type.get(error_type, 0) + 1
        to_delete.append(m)
        if ledger is not None:
            attempts = env.get("attempts") if env else None
            if env is not None:
                result = ledger.settle(env, state="retrying" if (attempts or 1) > 1 else "captured",
                                       message_id=sent_ids.get(entry_id), settled_by=settled_by,
                                       note=f"redriven from parking ({settled_by})")
            else:
                ledger_id = copy["MessageAttributes"][LEDGER_ID_ATTRIBUTE]["StringValue"]
                result = ledger.settle(None, item_id=ledger_id, state="captured", message_id=sent_ids.get(entry_id),
                                       settled_by=settled_by, note=f"redriven from parking ({settled_by})",
                                       error={"type": error_type, "message": "redriven as it was parked"})
            summary.ledger_write_failures += result.failed
    for i in range(0, len(to_delete), 10):
        chunk = to_delete[i : i + 10]
        try:
            resp = sqs.delete_message_batch(QueueUrl=parking, Entries=[
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(chunk)])
            failed = resp.get("Failed") or []
        except Exception as exc:
            failed = chunk
            summary.notes.append(f"delete from parking failed ({describe_aws_error(exc)}): duplicates will be "
                                 "redriven again; the worker's guards make a second run safe"[:300])
        if failed:
            summary.notes.append(f"{len(failed)} moved message(s) could not be deleted from parking"[:300])


def _release(sqs: Any, parking: str, message: dict) -> None:
    try:
        sqs.change_message_visibility(QueueUrl=parking, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    except Exception:
        pass  # it reappears after VISIBILITY_S anyway
