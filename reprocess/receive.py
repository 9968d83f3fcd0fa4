"""Receiving for the drain loop: rounds of ``ReceiveMessage`` calls, one round read ahead.

A round is what is received together (``DrainOptions.round_receives`` calls of 10); it is
also the window in which records of one key are put in stream order. The next round is on
its way while this one runs. Only the run's first receive long-polls (``wait_time_s``: a
capture written as the run starts is still taken), alone, before the rest of its round;
once it has come back, every later receive short-polls, so a drained queue ends the run at once instead of after a
``wait_time_s`` tail at the end of every run (a backlog that is a multiple of 10 ends with a
receive that cannot tell it is the last). A short poll that comes back empty is checked
against the queue's visible count before the run ends on it (``_stragglers``): on AWS a short
poll samples only some of SQS's servers and can miss the last few messages. ``take``
decides which received messages this run takes: not one it already tried (its id, or a
re-sent copy tagged with this run), not past ``max``.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from streamkit.deadline import Deadline

from .heartbeat import VisibilityKeeper
from .item import Holds
from .options import DrainOptions
from .summary import Summary

RUN_ATTRIBUTE = "reprocessRun"  # message attribute on re-sent copies: the run that sent them
STRAGGLER_CHECKS = 3  # short polls retried while the queue's visible count says it is not empty


class Receiver:
    def __init__(self, sqs: Any, queue_url: str, options: DrainOptions, *, deadline: Deadline,
                 visibility_timeout_s: int, run_id: str, summary: Summary, holds: Holds,
                 keeper: VisibilityKeeper | None = None):
        self.sqs, self.queue_url, self.options = sqs, queue_url, options
        self.keeper = keeper  # hides what was received until it is settled (reprocess.heartbeat)
        self.deadline, self.visibility_timeout_s = deadline, visibility_timeout_s
        self.run_id, self.summary, self.holds = run_id, summary, holds
        # one thread for the round read ahead, the others for its parallel receives
        self._pool = ThreadPoolExecutor(options.concurrency + 1)
        self._ahead: Future | None = None
        self.long_poll = True  # until the first receive comes back

    def next_round(self) -> list[dict]:
        """The round read ahead, else one received now."""
        ahead, self._ahead = self._ahead, None
        return ahead.result() if ahead is not None else self._receive()

    def read_ahead(self) -> None:
        self._ahead = self._pool.submit(self._receive)

    def take(self, messages: list[dict]) -> list[dict]:
        """The messages this run takes now; the others are held (made visible at the end)."""
        fresh: list[dict] = []
        limit = self.options.max_messages
        for m in messages:
            mid = m["MessageId"]
            run = (m.get("MessageAttributes") or {}).get(RUN_ATTRIBUTE, {}).get("StringValue")
            if mid in self.holds.seen or run == self.run_id:
                self.holds.hold(m)
                self.summary.held += 1
            elif limit is not None and self.summary.taken >= limit:
                self.holds.hold(m)  # over --max: not taken
                self.summary.released += 1
            else:
                self.holds.seen.add(mid)
                self.summary.taken += 1
                fresh.append(m)
        if self.keeper is not None and len(fresh) < len(messages):  # held to the end: no heartbeat
            taken = {m["MessageId"] for m in fresh}
            self.keeper.untrack(m["MessageId"] for m in messages if m["MessageId"] not in taken)
        return fresh

    def close(self) -> None:
        """Hold what was read ahead but never taken; stop the threads."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            try:
                for m in ahead.result():
                    if m["MessageId"] not in self.holds.receipts:
                        if m["MessageId"] not in self.holds.seen:
                            self.summary.released += 1
                        self.holds.hold(m)
            except Exception as exc:
                self.summary.note(f"read-ahead receive failed: {type(exc).__name__}: {exc}"[:300])
        self._pool.shutdown(wait=True)

    def _receive(self) -> list[dict]:
        got = self._receive_round()
        if self.keeper is not None:
            self.keeper.track(got)
        return got

    def _receive_round(self) -> list[dict]:
        limit = self.options.max_messages
        want = None if limit is None else limit - self.summary.taken
        calls = self.options.round_receives
        if want is not None:
            calls = max(1, min(calls, -(-want // 10)))
        wait = self.options.wait_time_s if self.long_poll else 0
        remaining = self.deadline.remaining_s()
        if remaining != float("inf"):
            wait = max(0, min(wait, int(remaining) - 1))
        count = 10 if want is None else max(1, min(10, want))

        def one(wait_s: int) -> list[dict]:
            return self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait_s,
                VisibilityTimeout=self.visibility_timeout_s,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])

        def parallel(n: int) -> list[dict]:
            futures = [self._pool.submit(one, 0) for _ in range(n)]
            got: list[dict] = []
            error: BaseException | None = None
            for future in futures:
                try:
                    got += future.result()
                except Exception as exc:
                    error = error or exc
            if error is not None:
                for m in got:  # received by the calls that worked: made visible again at the end
                    self.holds.hold(m)
                raise error
            return got

        self.long_poll = False
        if wait:  # the run's first receive waits alone: parallel ones could empty the queue under it
            first = one(wait)
            if len(first) < count or calls == 1:
                return first
            try:
                return first + parallel(calls - 1)
            except Exception:
                for m in first:
                    self.holds.hold(m)
                raise
        got = one(0) if calls == 1 else parallel(calls)
        return got or self._stragglers(one)

    def _stragglers(self, one: Callable[[int], list[dict]]) -> list[dict]:
        """An empty short poll is not proof of an empty queue: SQS answers it from a sample
        of its servers, so a few messages can be missed. Before the run ends on it, the
        queue's visible count decides (no wait on a really empty queue); while it says
        messages are there, short-poll again, a bounded number of times."""
        for _ in range(STRAGGLER_CHECKS):
            try:
                visible = int(self.sqs.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"],
                )["Attributes"].get("ApproximateNumberOfMessages", "0"))
            except Exception as exc:  # the run ends as before; the messages stay in the queue
                self.summary.note(f"could not confirm the queue is empty: {type(exc).__name__}: {exc}"[:300])
                return []
            if visible == 0 or self.deadline.remaining_s() < 1:
                return []
            got = one(0)
            if got:
                return got
        return []
