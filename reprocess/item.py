"""One message taken in a run and what running it gave; the receipts a run still holds."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .classify import Classified, Kind


class Outcome(enum.Enum):
    """What running a message gave (settling turns it into what happens to the message)."""

    PENDING = "pending"  # not run yet
    HANDLED = "handled"  # every record it stands for ran through handle_record
    FAILED = "failed"  # failed again: re-send (envelope) or capture its failed records (on-failure)
    PARK = "park"  # can never succeed as it is: park with ``park_reason``
    NOT_STARTED = "not-started"  # the time budget ran out first: made visible again, not taken


@dataclass
class Item:
    message: dict
    what: Classified
    order: int = 0  # position in its receive, for a stable order within a group
    outcome: Outcome = Outcome.PENDING
    error: dict | None = None  # the latest error ({"type", "message", "traceback"})
    park_reason: str | None = None
    # An on-failure message: envelopes for its records that failed (they outlive the stream)
    # and how many records the stream gave back.
    follow_ups: list[dict] = field(default_factory=list)
    stream_records: int = 0
    sent_ids: dict[int, str] = field(default_factory=dict)  # copy index -> SQS message id (the ledger's)
    left_because: str | None = None  # why it stays in the queue as it is

    def __post_init__(self) -> None:
        if self.what.kind is Kind.PARK:
            self.park(self.what.park_reason or "unknown")

    @property
    def message_id(self) -> str:
        return self.message["MessageId"]

    @property
    def receipt(self) -> str:
        return self.message["ReceiptHandle"]

    @property
    def counted_as(self) -> str:
        """The error type a message is counted (and tagged) under: its latest error, else its
        envelope's, else ``malformed``."""
        return (self.error or {}).get("type") or self.what.error_type or "malformed"

    def park(self, reason: str) -> None:
        self.outcome, self.park_reason = Outcome.PARK, reason


class Holds:
    """Messages this run has seen, and the receipts of those it leaves alone: all made
    visible again when the run ends, so the next run sees them at once."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.receipts: dict[str, str] = {}  # MessageId -> latest receipt handle
        # Messages this run deleted. SQS can deliver a message again while a copy is being
        # run (at-least-once, or its visibility ran out); a delete made with the older
        # receipt handle "succeeds" without deleting, so the held copy is deleted at the end.
        self.deleted: set[str] = set()

    def hold(self, message: dict) -> None:
        self.receipts[message["MessageId"]] = message["ReceiptHandle"]

    def release_item(self, item: Item) -> None:
        """Not started after all: forget it was seen, hold its receipt."""
        self.seen.discard(item.message_id)
        self.hold(item.message)
