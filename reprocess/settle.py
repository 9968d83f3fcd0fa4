"""Settling a round: what happens to each message after its records ran, and the counts.

The rule: **a message is deleted only on a positive disposition** (every record it stands
for was handled, re-sent with SQS accepting the copy, or parked with SQS accepting it).
Sends come first, the delete last, so a crash in between leaves a duplicate, never a loss.

| outcome of running            | disposition                                                  |
|-------------------------------|--------------------------------------------------------------|
| handled                       | HANDLED: deleted                                             |
| failed, attempts left         | RESENT: copy with ``attempts + 1`` and the new error, then deleted |
| failed, out of attempts, park | PARKED: to the parking queue with the reason, then deleted   |
| a send refused, no parking queue, or nothing proves its records safe | LEFT: stays as it is |
| not started (time budget)     | RELEASED: made visible again, not counted as taken           |

Counted as: HANDLED -> succeeded; RESENT and LEFT -> still_failing; PARKED -> parked.

The deletes of a round run on a thread of their own while the next round goes on
(``finish`` waits for them before the run ends and counts their failures).

The failure ledger (``streamkit.ledger``) hears of every disposition from the one place it
is counted (``_count``): handled, retrying (re-sent with its new attempt count and error, or
left), parked (with its reason). The updates of a round go out together at its end, in
parallel; a ledger that cannot be written costs a note, never a disposition.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from streamkit.envelope import dumps, message_attributes
from streamkit.ledger import Ledger, message_failure_id
from streamkit.log import LazyLogger
from streamkit.sqsbatch import send_batch
from streamkit.timefmt import now_iso

from .heartbeat import VisibilityKeeper
from .item import Holds, Item, Outcome
from .receive import RUN_ATTRIBUTE
from .summary import Summary

DELETE_ROUNDS_BEHIND = 1  # rounds whose deletes may still be on their way while the loop goes on

MAX_MESSAGE_BYTES = 1_048_576  # SQS's largest message; a queue set lower refuses and we keep the original
PARK_REASON_ATTRIBUTE = "parkReason"
LEDGER_ID_ATTRIBUTE = "ledgerId"  # a parked non-envelope body keeps its ledger item's id here
MAX_ATTRIBUTE_CHARS = 1_000


class Disposition(enum.Enum):
    HANDLED = "handled"
    RESENT = "resent"
    PARKED = "parked"
    LEFT = "left"
    RELEASED = "released"


def reason_kind(reason: str | None) -> str:
    """Group park reasons for the summary (the first clause, without ids)."""
    if not reason:
        return "unknown"
    return reason.split(":")[0][:80]


class Settler:
    def __init__(self, sqs: Any, queue_url: str, *, consumer: str, max_attempts: int, run_id: str,
                 parking_url: Callable[[], str | None], parking_name: str, summary: Summary, holds: Holds,
                 log: LazyLogger, ledger: Ledger | None = None, settled_by: str | None = None,
                 keeper: VisibilityKeeper | None = None):
        self.sqs, self.queue_url, self.consumer = sqs, queue_url, consumer
        # the heartbeat (reprocess.heartbeat): a message stays hidden until SQS has its disposition
        self.keeper = keeper
        self.max_attempts, self.run_id = max_attempts, run_id
        self._parking_url, self.parking_name = parking_url, parking_name
        self.summary, self.holds, self.log = summary, holds, log
        self._deleter: ThreadPoolExecutor | None = None  # one thread: deletes behind the loop
        self._deleting: list[Future] = []
        self.call_error: str | None = None  # an SQS call that failed past its retries: the run ends
        self.ledger, self.settled_by = ledger, settled_by or f"run {run_id}"
        self._ledger_writes: list[Callable[[], Any]] = []

    # ---- a dry run: count, never change ------------------------------------------------------
    def inspect(self, items: list[Item]) -> None:
        for item in items:
            self.summary.by_error_type[item.what.error_type or "malformed"] += 1
            if item.outcome is Outcome.PARK:
                self.summary.park_reasons[reason_kind(item.park_reason)] += 1
            self.holds.hold(item.message)  # invisible until the run ends, then made visible

    # ---- a real run ------------------------------------------------------------------------------
    def settle(self, items: list[Item], pool: ThreadPoolExecutor | None) -> None:
        """Park, re-send, then delete exactly what ended with a positive disposition."""
        deletable: list[Item] = []
        to_park: list[Item] = []
        to_resend: list[Item] = []
        for item in items:
            self.summary.stream_records += item.stream_records
            if item.outcome is Outcome.NOT_STARTED:
                self._count(item, Disposition.RELEASED)
            elif item.outcome is Outcome.HANDLED:
                self._count(item, Disposition.HANDLED)
                deletable.append(item)
            elif item.outcome is Outcome.PARK:
                to_park.append(item)
            elif item.outcome is Outcome.FAILED:
                env = item.what.envelope
                attempts = (env.attempts if env else 1) + 1
                if env is not None and attempts >= self.max_attempts:
                    error = item.error or {}
                    why = f"{error.get('type')}: {error.get('message')}"
                    item.park_reason = f"gave up after {attempts} attempts: {why}"[:500]
                    to_park.append(item)
                else:
                    to_resend.append(item)
            else:  # never ran: nothing proves anything about it
                self._leave(item, "NotRun", "a message was taken but never run; left in the queue")

        with_copies = [it for it in to_park if it.follow_ups]
        if with_copies:  # an expired on-failure batch: its failed survivors go back first
            refused = self._send_copies(with_copies)
            for item in with_copies:
                if id(item) in refused:
                    to_park.remove(item)
                    self._leave(item, "ResendFailed", "could not capture failed stream records")
        deletable += self._park(to_park)
        deletable += self._resend(to_resend)
        if self.keeper is not None:  # the deletable ones stay tracked until their delete is done
            deleting = {id(it) for it in deletable}
            self.keeper.untrack(it.message_id for it in items if id(it) not in deleting)
        self._delete(deletable, pool)
        self._flush_ledger(pool)

    def release(self) -> None:
        """Make every held message visible again (they would reappear after the visibility
        timeout anyway; this lets the next run see them at once)."""
        deleted = self.holds.deleted
        again = [h for mid, h in self.holds.receipts.items() if mid in deleted]
        handles = [h for mid, h in self.holds.receipts.items() if mid not in deleted]
        self.holds.receipts.clear()
        if again:
            self._delete_redelivered(again)
        for i in range(0, len(handles), 10):
            entries = [{"Id": str(j), "ReceiptHandle": h, "VisibilityTimeout": 0}
                       for j, h in enumerate(handles[i : i + 10])]
            try:
                resp = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                self.summary.unreleased += len(entries)
                self.summary.note(f"could not release messages early: {type(exc).__name__}: {exc}"[:300])
                continue
            self.summary.unreleased += len(resp.get("Failed") or [])

    def _delete_redelivered(self, handles: list[str]) -> None:
        """Copies of messages this run already settled and deleted, delivered again while
        they ran: their delete took the older receipt handle, so delete them by the newer."""
        left = 0
        for i in range(0, len(handles), 10):
            entries = [{"Id": str(j), "ReceiptHandle": h} for j, h in enumerate(handles[i : i + 10])]
            try:
                resp = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                left += len(entries)
                self.summary.note(f"could not delete redelivered copies: {type(exc).__name__}: {exc}"[:300])
                continue
            left += len(resp.get("Failed") or [])
        self.summary.note(f"{len(handles)} message(s) delivered again while they ran; the copies "
                          f"were deleted ({left} could not be)")
        self.summary.delete_failures += left

    # ---- counting -------------------------------------------------------------------------------
    def _count(self, item: Item, disposition: Disposition, error_type: str | None = None) -> None:
        """Count a disposition, and tell the ledger (the one place both happen)."""
        self._ledger_record(item, disposition)
        s = self.summary
        if disposition is Disposition.HANDLED:
            s.succeeded += 1
        elif disposition is Disposition.RELEASED:
            s.taken -= 1
            s.released += 1
            self.holds.release_item(item)
        elif disposition is Disposition.PARKED:
            s.parked += 1
            s.park_reasons[reason_kind(item.park_reason)] += 1
            s.by_error_type[item.counted_as] += 1
        else:  # RESENT, LEFT: still failing
            s.still_failing += 1
            s.by_error_type[error_type or item.counted_as] += 1
            if disposition is Disposition.RESENT:
                s.resent += 1
            else:
                self.holds.hold(item.message)

    def _leave(self, item: Item, error_type: str, why: str) -> None:
        """The message stays in the queue as it is (counted as still failing)."""
        item.left_because = why
        self._count(item, Disposition.LEFT, error_type)
        self.summary.note(why[:300])

    # ---- the ledger -------------------------------------------------------------------------------
    def _ledger_record(self, item: Item, disposition: Disposition) -> None:
        """Queue the ledger update for ``item``'s disposition (sent by ``_flush_ledger``)."""
        ledger = self.ledger
        if ledger is None or disposition is Disposition.RELEASED:
            return
        env = item.what.envelope
        tried = item.error is not None or disposition is Disposition.HANDLED
        common: dict[str, Any] = {"settled_by": self.settled_by}
        if env is not None:
            common.update(envelope=env.body, attempts=env.attempts + 1 if tried else env.attempts)
        else:  # Lambda's on-failure record or a malformed body: named by its message
            common.update(envelope=None, item_id=item.message.get("MessageAttributes", {}).get(LEDGER_ID_ATTRIBUTE, {})
                          .get("StringValue") or message_failure_id(item.message_id, item.what.seen_at),
                          seen_at=item.what.seen_at,
                          error=item.error or {"type": item.counted_as, "message": (
                              item.what.on_failure.batch.describe() if item.what.on_failure is not None
                              else ", ".join(ref.url for ref in item.what.objects) if item.what.objects
                              else item.park_reason or item.what.park_reason or "")})
        if item.error is not None:
            common["error"] = item.error
        extra: dict[str, Any]
        if disposition is Disposition.HANDLED:
            state, extra = "handled", {}
        elif disposition is Disposition.PARKED:
            state, extra = "parked", {"park_reason": item.park_reason or "unknown"}
        elif disposition is Disposition.RESENT and env is not None:
            state, extra = "retrying", {"message_id": item.sent_ids.get(0)}
        elif disposition is Disposition.RESENT:  # an on-failure message: its failed records are new captures
            state = "handled"
            where = (f"read from {', '.join(ref.url for ref in item.what.objects)}" if item.what.objects
                     else "read back from the stream")
            extra = {"note": f"{where}; {len(item.follow_ups)} record(s) failed again and were "
                             "captured as failures of their own"}
        else:  # LEFT: still in the queue as it was
            state = "retrying" if tried else "captured"
            extra = {"note": item.left_because}
            if env is not None and tried:
                common["attempts"] = env.attempts  # the copy in the queue was not replaced
        if env is None and item.follow_ups and disposition in (Disposition.RESENT, Disposition.PARKED):
            # an on-failure message's records that failed again went back as envelopes: new captures
            follow_ups = [(e, item.sent_ids.get(j), None) for j, e in enumerate(item.follow_ups)]
            self._ledger_writes.append(lambda: ledger.put_failures(follow_ups, state="retrying"))
        args = {**common, **extra}
        self._ledger_writes.append(lambda: ledger.settle(state=state, **args))

    def _flush_ledger(self, pool: ThreadPoolExecutor | None) -> None:
        writes, self._ledger_writes = self._ledger_writes, []
        if not writes:
            return
        results = list(pool.map(lambda w: w(), writes)) if pool is not None and len(writes) > 1 else [w() for w in writes]
        failed = sum(r.failed for r in results)
        if failed:
            self.summary.ledger_write_failures += failed
            self.summary.note(f"ledger: {failed} update(s) failed ({results[-1].reason or 'see logs'}); "
                              "the messages themselves were settled")

    # ---- parking ---------------------------------------------------------------------------------
    def _park(self, items: list[Item]) -> list[Item]:
        """Send to the parking queue; returns the items now safely parked."""
        if not items:
            return []
        url = self._parking_url()
        if not url:
            for item in items:
                self._leave(item, "NoParkingQueue", f"cannot park ({item.park_reason}): no parking queue")
            self.summary.note(f"no parking queue {self.parking_name}: messages to park stay in the queue")
            return []
        entries = [self._parked_entry(str(i), item) for i, item in enumerate(items)]
        refused = self._send(url, entries)
        parked = []
        for entry, item in zip(entries, items, strict=True):
            if entry["Id"] in refused:
                self._leave(item, "ParkFailed", f"could not park: {refused[entry['Id']]}")
            else:
                self._count(item, Disposition.PARKED)
                self.log.warning("parked", message_id=item.message_id, reason=item.park_reason)
                parked.append(item)
        return parked

    def _parked_entry(self, entry_id: str, item: Item) -> dict:
        reason = item.park_reason or "unknown"
        env = item.what.envelope
        if env is not None:
            body = dict(env.body)
            if item.error:
                body["error"] = item.error
                body["attempts"] = env.attempts + 1
            body["parked"] = {"reason": reason, "at": now_iso(), "fromQueue": self.queue_url, "runId": self.run_id}
            text = dumps(body)
        else:
            text = item.message.get("Body", "")  # malformed or on-failure: kept byte for byte
        attrs = message_attributes(self.consumer, item.counted_as)
        attrs[PARK_REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": reason[:MAX_ATTRIBUTE_CHARS]}
        if env is None:
            ledger_id = (item.message.get("MessageAttributes", {}).get(LEDGER_ID_ATTRIBUTE, {}).get("StringValue")
                         or message_failure_id(item.message_id, item.what.seen_at))
            attrs[LEDGER_ID_ATTRIBUTE] = {"DataType": "String", "StringValue": ledger_id}
        return {"Id": entry_id, "MessageBody": text, "MessageAttributes": attrs}

    # ---- re-sending --------------------------------------------------------------------------
    def _copies(self, item: Item) -> list[tuple[str, str]]:
        """(body, error type) of what goes back to the failure queue for a failed item: the
        envelope with ``attempts + 1`` and its latest error, or an on-failure message's
        envelopes for its failed records."""
        env = item.what.envelope
        if env is not None:
            error = item.error or {}
            body = {**env.body, "attempts": env.attempts + 1, "error": error}
            return [(dumps(body), error.get("type") or "Unknown")]
        return [(dumps(e), e["error"]["type"]) for e in item.follow_ups]

    def _resend(self, items: list[Item]) -> list[Item]:
        """Re-send with ``attempts + 1`` and the latest error; returns the items whose copies are in."""
        sendable = []
        for item in items:
            if self._copies(item):
                sendable.append(item)
            else:  # e.g. the stream could not be read: no record is known to be safe
                why = (item.error or {}).get("message", "")
                self._leave(item, item.counted_as,
                            f"nothing of it was captured ({item.counted_as}: {why}); left in the queue")
        refused = self._send_copies(sendable)
        done = []
        for item in sendable:
            if id(item) in refused:
                self._count(item, Disposition.LEFT)
            else:
                self._count(item, Disposition.RESENT)
                done.append(item)
        return done

    def _send_copies(self, items: list[Item]) -> set[int]:
        """Send every item's copies (tagged with this run); returns ``id()`` of items not fully sent."""
        entries: list[dict] = []
        owner: dict[str, Item] = {}
        for i, item in enumerate(items):
            for j, (text, err_type) in enumerate(self._copies(item)):
                attrs = message_attributes(self.consumer, err_type)
                attrs[RUN_ATTRIBUTE] = {"DataType": "String", "StringValue": self.run_id}
                entries.append({"Id": f"{i}-{j}", "MessageBody": text, "MessageAttributes": attrs})
                owner[f"{i}-{j}"] = item
        refused = self._send(self.queue_url, entries, sent=lambda entry_id, mid: owner[entry_id].sent_ids
                             .__setitem__(int(entry_id.split("-")[1]), mid))
        for reason in refused.values():
            self.summary.note(f"re-send failed, original left in the queue: {reason}"[:300])
        # An on-failure message whose copies went in only in part stays too: rerunning its
        # records is safe (side effects are guarded by (consumer, eventID)).
        return {id(owner[entry_id]) for entry_id in refused}

    def _send(self, url: str, entries: list[dict],
              sent: Callable[[str, str], None] | None = None) -> dict[str, str]:
        """``SendMessageBatch`` them all; returns ``{entry id: reason}`` of the refused ones
        (``sent(entry id, message id)`` hears of the accepted ones)."""
        if not entries:
            return {}
        reasons: dict[str, str] = {}
        refused = send_batch(self.sqs, url, entries, max_batch_bytes=MAX_MESSAGE_BYTES,
                             on_error=lambda m, r: reasons.__setitem__(m["Id"], r),
                             on_call_error=lambda exc: self._failed_call("SendMessageBatch", exc),
                             on_sent=None if sent is None else lambda m, mid: sent(m["Id"], mid))
        return {m["Id"]: reasons.get(m["Id"], "") for m in refused}

    def _failed_call(self, operation: str, exc: BaseException) -> None:
        if self.call_error is None:
            self.call_error = f"{operation} failed: {type(exc).__name__}: {exc}"[:300]

    # ---- deleting ------------------------------------------------------------------------------
    def finish(self) -> None:
        """Wait for the deletes still on their way and count what they could not delete."""
        self._collect(wait=True)
        if self._deleter is not None:
            self._deleter.shutdown(wait=True)
            self._deleter = None

    def _collect(self, wait: bool) -> None:
        pending = []
        for future in self._deleting:
            if wait or future.done():
                self.summary.delete_failures += future.result()
            else:
                pending.append(future)
        self._deleting = pending

    def _delete(self, items: list[Item], pool: ThreadPoolExecutor | None) -> None:
        """Delete in calls of 10, behind the loop: the next round does not wait for it (the
        one after it does, if it is still on its way)."""
        chunks = [items[i : i + 10] for i in range(0, len(items), 10)]
        if not chunks:
            return

        def one(chunk: list[Item]) -> int:
            entries = [{"Id": str(i), "ReceiptHandle": it.receipt} for i, it in enumerate(chunk)]
            try:
                resp = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                self.log.error("delete failed; messages will reappear (handled ones are idempotent)", error=str(exc))
                self._failed_call("DeleteMessageBatch", exc)
                undeleted = chunk
            else:
                failed = resp.get("Failed") or []
                answered = {e.get("Id") for e in (resp.get("Successful") or [])} | {f.get("Id") for f in failed}
                for f in failed:
                    self.log.error("delete failed for one message", code=f.get("Code"), error=f.get("Message"))
                bad = {f.get("Id") for f in failed} | {e["Id"] for e in entries if e["Id"] not in answered}
                undeleted = [it for i, it in enumerate(chunk) if str(i) in bad]
                self.holds.deleted.update(it.message_id for i, it in enumerate(chunk) if str(i) not in bad)
            for item in undeleted:  # still in the queue: made visible again when the run ends
                self.holds.hold(item.message)
            if self.keeper is not None:
                self.keeper.untrack(it.message_id for it in chunk)
            return len(undeleted)

        def all_of_them() -> int:
            if pool is not None and len(chunks) > 1:
                return sum(pool.map(one, chunks))
            return sum(one(c) for c in chunks)

        if self._deleter is None:
            self._deleter = ThreadPoolExecutor(1, thread_name_prefix="reprocess-delete")
        self._deleting.append(self._deleter.submit(all_of_them))
        self._collect(wait=False)
        # At most one round of deletes behind the loop: unbounded, slow deletes let taken
        # messages pass their visibility timeout and come back, and a delete made with the
        # older receipt handle does not take (SQS: "the message might not be deleted").
        while len(self._deleting) > DELETE_ROUNDS_BEHIND:
            self.summary.delete_failures += self._deleting.pop(0).result()
