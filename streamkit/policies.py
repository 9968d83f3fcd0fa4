"""The three failure policies. A policy decides only what happens to a failed record: it gets
one ``Failure`` and returns a ``Decision`` (``streamkit.batch``); the loop and ``Batch`` do
the counting, so a policy cannot lose a record by forgetting to count it.

Write your own by subclassing ``FailurePolicy`` and passing an instance to ``stream_handler``::

    class DropValidationErrors(FailurePolicy):
        name = "drop-validation-errors"

        def on_failure(self, failure):
            if isinstance(failure.error, ValidationError):
                return Decision.drop("invalid record; dropped")
            return Decision.report("record failed; the shard blocks here")

A policy that returns ``Decision.hold`` keeps the failure and must settle it in ``settle``
(captured, or not: then it is reported for retry); what it never settles is reported at the
end of the batch, with an error log.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from .batch import Batch, Decision, Failure, Settlement
from .capture import FailureCapture, InFlight
from .circuit import CIRCUIT_OPEN_REPORT
from .errors import ConfigError
from .ledger import BATCH_WRITE_MAX, Ledger
from .ledger import SETTINGS as LEDGER_SETTINGS
from .settings import Setting, load
from .sqsbatch import DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_ENTRIES


class FailurePolicy:
    """Base class; subclass it to write your own policy and pass an instance to ``stream_handler``."""

    name = "custom"
    SETTINGS: tuple[Setting, ...] = ()  # the policy's own settings, checked by ``bind``

    def bind(self, consumer: str, env: Mapping[str, str]) -> None:
        """Called once at cold start; raise ``ConfigError`` for missing settings."""
        load(self.SETTINGS, env, owner=f"consumer {consumer!r}")

    def on_failure(self, failure: Failure) -> Decision:
        """Decide what happens to one failed record."""
        raise NotImplementedError

    # While the sink's circuit is open (``streamkit.circuit``), the loop holds the shard: it
    # waits for the next probe within the deadline, then reports the record and the rest.
    waits_for_probe = True
    _REPORT_OPEN = Decision.report(CIRCUIT_OPEN_REPORT)

    def on_circuit_open(self, failure: Failure) -> Decision:
        """The sink's circuit is open: the record was not sent (or its failure opened it). By
        default it and the rest of the batch are reported for retry, so the shard waits for
        the sink instead of capturing or skipping what it could not try."""
        return self._REPORT_OPEN

    def settle(self, held: Sequence[Failure], *, final: bool, request_id: str | None) -> Sequence[Settlement]:
        """Settle failures this policy decided to hold (``held``, in stream order). Called after
        each hold and once with ``final=True`` at the end of the batch; may settle none yet
        unless ``final``."""
        return ()

    def after_batch(self, batch: Batch) -> None:
        """Called once per batch, after its counts are final (bookkeeping such as the failure
        ledger's; it cannot change the batch's outcome). Must not raise."""


class BlockingRecords:
    """The record a consumer's shard is held on, in the failure ledger (``Ledger.blocking_*``):
    written once per invocation that reports it for retry, marked resolved when a later batch
    starts with it and handles it. What the operator page's "blocked" badge reads, with the
    real error (a hard-fail failure, or the sink's open circuit)."""

    def __init__(self, ledger: Ledger | None, function_name: str | None):
        self.ledger, self.function_name = ledger, function_name
        self._open: set[str] | None = None  # sequence numbers recorded as blocking (loaded once)

    def failed(self, failure: Failure) -> None:
        if self.ledger is not None and failure.sequence_number is not None:
            self.ledger.blocking_failed(failure.raw, failure.error_info, function_name=self.function_name)
            if self._open is not None:
                self._open.add(failure.sequence_number)

    def after_batch(self, batch: Batch) -> None:
        """Costs one ledger Query per container (which records are blocking), nothing per batch."""
        if self.ledger is None or not batch.size or 0 in batch.reported:
            return
        first = batch.sequence_number(0)
        if first is None:
            return
        if self._open is None:
            self._open = self.ledger.open_blocking()
        if first in self._open:
            self._open.discard(first)
            self.ledger.blocking_resolved(first)


class SoftFail(FailurePolicy):
    """Log, count, continue: the batch succeeds."""

    name = "soft-fail"
    _DROP = Decision.drop("record failed; soft-fail policy moves on")

    waits_for_probe = False  # a soft-fail consumer never holds its shard

    def on_failure(self, failure: Failure) -> Decision:
        return self._DROP

    def on_circuit_open(self, failure: Failure) -> Decision:
        return self._DROP  # lossy by choice, as for any failure: logged (error_type CircuitOpenError), counted


class HardFail(FailurePolicy):
    """Stop at the first failure and report it with everything after it: the shard blocks.

    With a ledger (``LEDGER_TABLE``), the record the shard is stuck on is written there once
    per failed invocation (its real error, failed invocations so far), and marked resolved
    when a later batch starts with it and handles it: the operator page shows a blocked
    consumer's real error, not the mapping's "batch item failure reported at sequence number".
    """

    name = "hard-fail"
    _REPORT = Decision.report("record failed; hard-fail policy blocks the shard here")
    SETTINGS = LEDGER_SETTINGS

    def __init__(self) -> None:
        self.ledger: Ledger | None = None
        self.function_name: str | None = None
        self.blocking = BlockingRecords(None, None)

    def bind(self, consumer: str, env: Mapping[str, str]) -> None:
        super().bind(consumer, env)
        self.ledger = Ledger.from_env(consumer, env)
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.blocking = BlockingRecords(self.ledger, self.function_name)

    def on_failure(self, failure: Failure) -> Decision:
        self.blocking.failed(failure)
        return self._REPORT

    def on_circuit_open(self, failure: Failure) -> Decision:
        """Held by the open circuit: blocked as surely as by a failure, so the ledger says so
        (its error: the circuit's, naming the sink failure that opened it)."""
        self.blocking.failed(failure)
        return self._REPORT_OPEN

    def after_batch(self, batch: Batch) -> None:
        """A batch that starts with a record this consumer was blocked on, and handles it: resolved."""
        self.blocking.after_batch(batch)


class DlqCapture(FailurePolicy):
    """Capture the failed record with its exception to SQS (S3 when oversized) and continue.

    A record whose capture fails is reported for retry instead: never dropped. Since Lambda
    retries a stream from the lowest reported record, processing stops there too (the rest
    would be delivered again anyway).
    """

    name = "dlq-capture"
    _HOLD = Decision.hold("record failed; capturing it to the failure queue")
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
        *LEDGER_SETTINGS,
    )

    def __init__(self, queue_url: str | None = None, bucket: str | None = None, max_message_bytes: int | None = None):
        self.queue_url = queue_url
        self.bucket = bucket
        self.max_message_bytes = max_message_bytes
        self.capture: FailureCapture | None = None
        self._in_flight: InFlight | None = None  # this batch's captures on their way
        self.blocking = BlockingRecords(None, None)  # the shard held by the open circuit (ledger)

    def bind(self, consumer: str, env: Mapping[str, str]) -> None:
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
            ledger=Ledger(values["LEDGER_TABLE"], consumer, retention_days=values["LEDGER_RETENTION_DAYS"])
            if values["LEDGER_TABLE"] else None,
        )
        if (env.get("CIRCUIT_FAILURES") or "0").strip() not in ("", "0"):  # only the breaker holds its shard
            self.blocking = BlockingRecords(self.capture.ledger, env.get("AWS_LAMBDA_FUNCTION_NAME"))

    def on_failure(self, failure: Failure) -> Decision:
        return self._HOLD

    def on_circuit_open(self, failure: Failure) -> Decision:
        """Not captured (the sink is down, not the record): the shard waits, and the ledger
        records the record it waits on, as a hard-fail consumer's."""
        self.blocking.failed(failure)
        return self._REPORT_OPEN

    def settle(self, held: Sequence[Failure], *, final: bool, request_id: str | None) -> Sequence[Settlement]:
        """Send the held failures 10 at a time (one ``SendMessageBatch``) while the loop goes
        on, a few calls at once (``streamkit.capture.InFlight``); settle each as its call
        completes; at the end of the batch, send the rest and wait for all."""
        if self.capture is None:
            raise ConfigError("DlqCapture policy used before bind(); pass it to stream_handler")
        flight = self._in_flight
        if flight is None:
            flight = self._in_flight = InFlight(self.capture)
        elif len(flight):
            flight.forget_all_but(held)  # left behind by a batch that ended abnormally
        fresh = [f for f in held if f not in flight]
        if final:
            flight.submit(fresh, request_id)
        elif len(fresh) >= MAX_BATCH_ENTRIES:
            flight.submit(fresh[: len(fresh) - len(fresh) % MAX_BATCH_ENTRIES], request_id)
        settled = [Settlement(f, problem) for f, problem in flight.results(wait=final)]
        if self.capture.ledger_backlog >= BATCH_WRITE_MAX:  # the ledger: whole calls of 25 as they fill
            self.capture.flush_ledger(full_calls_only=True)
        return settled

    def after_batch(self, batch: Batch) -> None:
        """The batch's remaining ledger items, in one BatchWriteItem call per 25; a record the
        circuit held the shard on, handled now: resolved."""
        if self.capture is not None:
            self.capture.flush_ledger()
        self.blocking.after_batch(batch)


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
