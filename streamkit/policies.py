"""The three failure policies. A policy decides only what happens to a failed record;
the loop (``loop.py``) is the same for all of them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .capture import FailureCapture, PendingCapture
from .errors import ConfigError
from .settings import Setting, load
from .sqsbatch import DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from .loop import Batch

CONTINUE = False
STOP = True


class FailurePolicy:
    """Base class; subclass it to write your own policy and pass an instance to ``stream_handler``."""

    name = "custom"

    def bind(self, consumer: str, env: dict) -> None:
        """Called once at cold start; raise ``ConfigError`` for missing settings."""

    def on_failure(self, batch: "Batch", index: int, record: Any, seq: str | None, exc: BaseException) -> bool:
        """Handle one failed record; return ``STOP`` to report it and the rest for retry."""
        raise NotImplementedError

    def finish(self, batch: "Batch") -> None:
        """Called once at the end of every batch (flush buffers)."""


class SoftFail(FailurePolicy):
    """Log, count, continue: the batch succeeds."""

    name = "soft-fail"

    def on_failure(self, batch, index, record, seq, exc):
        batch.dropped += 1
        batch.log_failure("record failed; soft-fail policy moves on", record, seq, exc)
        return CONTINUE


class HardFail(FailurePolicy):
    """Stop at the first failure and report it with everything after it: the shard blocks."""

    name = "hard-fail"

    def on_failure(self, batch, index, record, seq, exc):
        batch.log_failure("record failed; hard-fail policy blocks the shard here", record, seq, exc)
        batch.report(index)
        return STOP


class DlqCapture(FailurePolicy):
    """Capture the failed record with its exception to SQS (S3 when oversized) and continue.

    A record whose capture fails is reported for retry instead: never dropped. Since Lambda
    retries a stream from the lowest reported record, processing stops there too (the rest
    would be delivered again anyway).
    """

    name = "dlq-capture"
    SETTINGS = (
        Setting(
            "FAILURE_QUEUE_URL", "the consumer's SQS failure queue, where failed records are captured",
            required=True,
            hint="serverless.yml generates it from custom.streamConsumers: {Ref: <FailureQueue>}; "
            "or choose FAILURE_POLICY=soft-fail|hard-fail",
        ),
        Setting("FAILURE_BUCKET", "S3 bucket for claim checks of envelopes over the queue's size limit"),
        Setting(
            "FAILURE_MAX_MESSAGE_BYTES",
            "the failure queue's MaximumMessageSize; larger envelopes go to FAILURE_BUCKET",
            parse=int, default=DEFAULT_MAX_BATCH_BYTES, low=1024, high=1_048_576,
        ),
    )

    def __init__(self, queue_url: str | None = None, bucket: str | None = None, max_message_bytes: int | None = None):
        self.queue_url = queue_url
        self.bucket = bucket
        self.max_message_bytes = max_message_bytes
        self.capture: FailureCapture | None = None

    def bind(self, consumer, env):
        given = {"FAILURE_QUEUE_URL": self.queue_url, "FAILURE_BUCKET": self.bucket}
        if self.max_message_bytes is not None:
            given["FAILURE_MAX_MESSAGE_BYTES"] = str(self.max_message_bytes)
        values = load(self.SETTINGS, {**env, **{k: v for k, v in given.items() if v}}, owner=f"consumer {consumer!r}")
        self.capture = FailureCapture(
            consumer,
            values["FAILURE_QUEUE_URL"],
            values["FAILURE_BUCKET"] or None,
            max_message_bytes=values["FAILURE_MAX_MESSAGE_BYTES"],
            function_name=env.get("AWS_LAMBDA_FUNCTION_NAME"),
        )

    def on_failure(self, batch, index, record, seq, exc):
        batch.log_failure("record failed; capturing it to the failure queue", record, seq, exc)
        batch.pending.append(PendingCapture(index, record, exc, seq))
        if len(batch.pending) >= MAX_BATCH_ENTRIES:
            return self._flush(batch)
        return CONTINUE

    def finish(self, batch):
        self._flush(batch)

    def _flush(self, batch) -> bool:
        if not batch.pending:
            return CONTINUE
        if self.capture is None:
            raise ConfigError("DlqCapture policy used before bind(); pass it to stream_handler")
        items, batch.pending = batch.pending, []
        failed = self.capture.capture(items, batch.request_id)
        batch.captured += len(items) - len(failed)
        for item in failed:
            batch.log_capture_failure(item)
            batch.report(item.index)
        return STOP if failed else CONTINUE


POLICIES = {"soft-fail": SoftFail, "hard-fail": HardFail, "dlq-capture": DlqCapture}


def _policy_name(text: str) -> str:
    name = text.strip()
    if name not in POLICIES:
        raise ValueError(f"unknown failure policy {name!r}: use one of {', '.join(POLICIES)}")
    return name


FAILURE_POLICY = Setting(
    "FAILURE_POLICY", "what happens to a record that fails (unless stream_handler gets policy=)",
    parse=_policy_name, choices=tuple(POLICIES), required=True,
    hint="serverless.yml: custom.streamConsumers.<consumer>.policy; or pass policy= to stream_handler",
)
SETTINGS = (FAILURE_POLICY,)


def make_policy(policy: str | FailurePolicy | None, consumer: str, env: Mapping[str, str]) -> FailurePolicy:
    """Resolve ``policy`` (or ``FAILURE_POLICY``) into a bound policy object."""
    if isinstance(policy, FailurePolicy):
        obj = policy
    else:
        if policy is None:
            name = load(SETTINGS, env, owner=f"consumer {consumer!r}")["FAILURE_POLICY"]
        elif policy in POLICIES:
            name = policy
        else:
            raise ConfigError(
                f"unknown failure policy {policy!r} for consumer {consumer!r}: "
                f"use one of {', '.join(POLICIES)} (FAILURE_POLICY or policy=)"
            )
        obj = POLICIES[name]()
    obj.bind(consumer, dict(env))
    return obj
