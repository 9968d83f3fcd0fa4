"""Samples of a failure queue, read without consuming them, and what an operator sees of each.

ReceiveMessage with a short visibility timeout, then ChangeMessageVisibility back to 0 at
once. Each sample still increments every returned message's ``ApproximateReceiveCount``;
see docs/operator-api.md for how that is kept from tripping a redrive policy.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from consumers.registry import Consumer
from streamkit.awsclient import describe_aws_error
from streamkit.timefmt import iso, iso_from_ms, now_iso, parse_iso

from .inspect_aws import Inspector

MAX_SAMPLE = 10  # one ReceiveMessage; more would mean hiding messages for longer
SAMPLE_VISIBILITY_S = 5  # hidden at most this long if the visibility reset fails
REDRIVE_HEADROOM = 2  # stop sampling a queue when a message is this close to maxReceiveCount


def summarize_message(message: dict) -> dict:
    """What an operator needs from one failure-queue message (envelope or Lambda on-failure record)."""
    from streamkit import onfailure, sources
    from streamkit.envelope import EnvelopeError, parse_envelope  # light, but only when sampling

    attrs = message.get("Attributes") or {}
    out: dict[str, Any] = {
        "messageId": message.get("MessageId"),
        "receiveCount": int(attrs.get("ApproximateReceiveCount", 0) or 0),
        "sentAt": iso_from_ms(attrs.get("SentTimestamp")),
    }
    body = message.get("Body") or ""
    try:
        env = parse_envelope(body)
    except EnvelopeError as exc:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if onfailure.is_on_failure(data):  # the hard-fail backstop: Lambda's metadata-only record
            out.update(onfailure.summarize(data))
        else:
            out.update(kind="malformed", errorType="MalformedEnvelope", errorMessage=exc.reason, keys=None,
                       sequenceNumber=None, capturedAt=None, attempts=None)
        return out
    error = env.error
    out.update(
        kind="envelope",
        consumer=env.consumer,
        errorType=error.get("type") or "Unknown",
        errorMessage=(error.get("message") or "")[:500],
        eventName=sources.event_name_of(env.record),
        eventID=sources.event_id_of(env.record),
        keys=sources.keys_of(env.record),
        sequenceNumber=sources.sequence_number_of(env.record),
        source=sources.source_of(env.record),
        capturedAt=env.captured_at,
        attempts=env.attempts,
        claimCheck=bool(env.payload_ref),
    )
    return out


class FailureSampler:
    """Samples a failure queue without consuming it, cached so a refreshing page peeks rarely.

    Why the cache: every peek increments the receive count of what it sees; a page refreshing
    every few seconds must not turn into one receive per message every few seconds.
    """

    def __init__(self, inspector: Inspector, *, ttl_s: float = 15.0, pause_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.inspector = inspector
        self.ttl_s, self.pause_s, self.clock = ttl_s, pause_s, clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict]] = {}
        self._paused_until: dict[str, float] = {}

    def invalidate(self, consumer_name: str) -> None:
        with self._lock:
            self._cache.pop(consumer_name, None)

    def sample(self, consumer: Consumer, limit: int, *, hold: bool = False) -> dict:
        """Up to ``limit`` (<= 10) messages; ``hold=True`` serves the cache without peeking."""
        limit = max(1, min(MAX_SAMPLE, limit))
        now = self.clock()
        with self._lock:
            hit = self._cache.get(consumer.name)
            paused = self._paused_until.get(consumer.name, 0) > now
        if hit and (hold or paused or now - hit[0] < self.ttl_s) and hit[1].get("limit", 0) >= limit:
            result = dict(hit[1], messages=hit[1]["messages"][:limit], cached=True)
            if paused:
                result["paused"] = "sampling paused: a message is near the queue's maxReceiveCount"
            return result
        if hold or paused:
            return {"messages": [], "countsByErrorType": {}, "limit": limit, "cached": True, "sampledAt": None,
                    "note": "not sampled now (a reprocess job is running or sampling is paused)"}
        result = self._peek(consumer, limit)
        with self._lock:
            self._cache[consumer.name] = (now, result)
            if result.get("nearRedrive"):
                self._paused_until[consumer.name] = now + self.pause_s
        return dict(result, cached=False)

    def _peek(self, consumer: Consumer, limit: int) -> dict:
        result: dict[str, Any] = {"messages": [], "countsByErrorType": {}, "limit": limit,
                                  "sampledAt": now_iso(), "skippedNearRedrive": 0}
        try:
            url = self.inspector.queue_url(consumer, "failures")
        except Exception as exc:
            result["error"] = describe_aws_error(exc)
            return result
        if url is None:
            result["note"] = f"failure queue {consumer.queue_name('failures')} does not exist"
            return result
        sqs = self.inspector.clients.get("sqs")
        try:
            redrive = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
                                 .get("Attributes", {}).get("RedrivePolicy") or "null")
            max_receive = int(redrive["maxReceiveCount"]) if redrive else None
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=limit, VisibilityTimeout=SAMPLE_VISIBILITY_S, WaitTimeSeconds=0,
                AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages") or []
        except Exception as exc:
            result["error"] = describe_aws_error(exc)
            return result
        if messages:
            # Make them visible again at once: the sample must not delay a worker or the stream path.
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                       for i, m in enumerate(messages)]
            try:
                sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except Exception as exc:
                result["note"] = f"sampled messages stay hidden up to {SAMPLE_VISIBILITY_S}s ({describe_aws_error(exc)})"
        counts: dict[str, int] = {}
        for m in messages:
            item = summarize_message(m)
            if max_receive is not None and item["receiveCount"] >= max_receive - REDRIVE_HEADROOM:
                result["skippedNearRedrive"] += 1
                result["nearRedrive"] = True
                continue
            counts[item["errorType"]] = counts.get(item["errorType"], 0) + 1
            result["messages"].append(item)
        result["countsByErrorType"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        if max_receive is not None:
            result["maxReceiveCount"] = max_receive
        stamps = [d for d in (parse_iso(m.get("capturedAt")) for m in result["messages"]) if d]
        if stamps:
            oldest = min(stamps)
            result["oldestCapturedAt"] = iso(oldest)
        return result


def age_seconds(text: str | None) -> float | None:
    """Seconds from an ISO time to now (one decimal), ``None`` when there is no time."""
    dt = parse_iso(text)
    return None if dt is None else round((datetime.now(UTC) - dt).total_seconds(), 1)
