"""The three failure policies. A policy decides only what happens to a failed record;
the loop (``loop.py``) is the same for all of them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .capture import FailureCapture, PendingCapture
from .errors import ConfigError
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

    def __init__(self, queue_url: str | None = None, bucket: str | None = None, max_message_bytes: int | None = None):
        self.queue_url = queue_url
        self.bucket = bucket
        self.max_message_bytes = max_message_bytes
        self.capture: FailureCapture | None = None

    def bind(self, consumer, env):
        queue_url = self.queue_url or env.get("FAILURE_QUEUE_URL")
        if not queue_url:
            raise ConfigError(
                f"consumer {consumer!r} uses the dlq-capture policy but FAILURE_QUEUE_URL is not set: "
                "set it in serverless.yml (functions.<name>.environment.FAILURE_QUEUE_URL: {Ref: <FailureQueue>}) "
                "or choose FAILURE_POLICY=soft-fail|hard-fail"
            )
        max_bytes = self.max_message_bytes
        if max_bytes is None:
            raw = env.get("FAILURE_MAX_MESSAGE_BYTES", str(DEFAULT_MAX_BATCH_BYTES))
            try:
                max_bytes = int(raw)
            except ValueError:
                max_bytes = 0
            if not 1024 <= max_bytes <= 1_048_576:
                raise ConfigError(
                    f"FAILURE_MAX_MESSAGE_BYTES={raw!r} is not a size between 1024 and 1048576 bytes; "
                    "set it to the failure queue's MaximumMessageSize (262144 by default)"
                )
        self.capture = FailureCapture(
            consumer,
            queue_url,
            self.bucket or env.get("FAILURE_BUCKET") or None,
            max_message_bytes=max_bytes,
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


def make_policy(policy: str | FailurePolicy | None, consumer: str, env: dict) -> FailurePolicy:
    """Resolve ``policy`` (or ``FAILURE_POLICY``) into a bound policy object."""
    if isinstance(policy, FailurePolicy):
        obj = policy
    else:
        name = policy if policy is not None else env.get("FAILURE_POLICY")
        if not name:
            raise ConfigError(
                f"no failure policy for consumer {consumer!r}: set FAILURE_POLICY to one of "
                f"{', '.join(POLICIES)} in serverless.yml (functions.<name>.environment) "
                "or pass policy= to stream_handler"
            )
        if name not in POLICIES:
            raise ConfigError(
                f"unknown failure policy {name!r} for consumer {consumer!r}: "
                f"use one of {', '.join(POLICIES)} (FAILURE_POLICY or policy=)"
            )
        obj = POLICIES[name]()
    obj.bind(consumer, env)
    return obj
