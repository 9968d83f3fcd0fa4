"""The result of one drain: counts that add up, for people (table) and scripts (JSON)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streamkit.timefmt import widen

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2


@dataclass
class Summary:
    """Every message taken ends in exactly one of succeeded / still_failing / parked.

    ``taken == succeeded + still_failing + parked`` always holds (``conserved``). Messages
    received but not started (over ``--max``, past the time budget) are ``released``
    (made visible again) and not counted as taken. ``held`` counts receipts of messages
    already tried in this run (their re-sent copies), which are left alone.

    ``config_error``: ``handle_record`` raised ``ConfigError`` (a setting missing or wrong, the
    same for every record): the run stopped, the message it came from and any not run yet were
    made visible again untouched (``released``, attempts unchanged), exit status 2.

    ``aborted`` says which SQS call failed past its retries and ended the run early (the
    summary still comes, the exit status is 1); ``delete_failures`` are messages settled but
    still in the queue (they come back, and count as remaining); ``unreleased`` are messages
    this run held that could not be made visible again (hidden until their visibility timeout).
    """

    consumer: str
    queue_url: str
    mode: str
    dry_run: bool = False
    parking_queue_url: str | None = None
    taken: int = 0
    succeeded: int = 0
    still_failing: int = 0
    parked: int = 0
    resent: int = 0
    released: int = 0
    held: int = 0
    delete_failures: int = 0
    unreleased: int = 0
    aborted: str | None = None
    config_error: str | None = None  # handle_record raised ConfigError: the run stopped (exit 2)
    ledger_write_failures: int = 0
    stream_records: int = 0  # records of on-failure messages: read back from the stream, or kept in S3 objects
    by_error_type: Counter = field(default_factory=Counter)
    park_reasons: Counter = field(default_factory=Counter)
    oldest: str | None = None
    newest: str | None = None
    stopped_by: str | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def conserved(self) -> bool:
        return self.taken == self.succeeded + self.still_failing + self.parked

    @property
    def exit_code(self) -> int:
        """0 when everything taken succeeded and left the queue (or a dry run that read it all);
        1 when failures remain, were parked, could not be deleted, or the run ended on an error;
        2 when ``handle_record`` raised ``ConfigError`` (the consumer's configuration, as for bad usage)."""
        if self.config_error:
            return EXIT_USAGE
        if self.aborted:
            return EXIT_FAILURES
        if self.dry_run:
            return EXIT_OK
        return EXIT_FAILURES if (self.still_failing or self.parked or self.delete_failures) else EXIT_OK

    def seen_time(self, iso: str | None) -> None:
        self.oldest, self.newest = widen(self.oldest, self.newest, iso)

    def note(self, text: str, limit: int = 20) -> None:
        if len(self.notes) < limit and text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "queue_url": self.queue_url,
            "parking_queue_url": self.parking_queue_url,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "taken": self.taken,
            "succeeded": self.succeeded,
            "still_failing": self.still_failing,
            "parked": self.parked,
            "resent": self.resent,
            "released": self.released,
            "held": self.held,
            "delete_failures": self.delete_failures,
            "unreleased": self.unreleased,
            "aborted": self.aborted,
            "config_error": self.config_error,
            "ledger_write_failures": self.ledger_write_failures,
            "stream_records": self.stream_records,
            "by_error_type": dict(self.by_error_type.most_common()),
            "park_reasons": dict(self.park_reasons.most_common()),
            "oldest": self.oldest,
            "newest": self.newest,
            "stopped_by": self.stopped_by,
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        """A short human summary (the CLI's default output)."""
        verb = "would reprocess" if self.dry_run else "taken"
        lines = [
            f"consumer {self.consumer} ({self.mode} mode{', dry run' if self.dry_run else ''})",
            f"queue    {self.queue_url}",
            f"{verb:<16}{self.taken}",
        ]
        if not self.dry_run:
            lines += [
                f"{'succeeded':<16}{self.succeeded}",
                f"{'still failing':<16}{self.still_failing}",
                f"{'parked':<16}{self.parked}",
            ]
            if self.delete_failures:
                lines.append(f"{'not deleted':<16}{self.delete_failures} (still in the queue: they come back)")
        if self.aborted:
            lines.append(f"ABORTED  {self.aborted}")
        if self.config_error:
            lines.append(f"STOPPED  handle_record raised ConfigError: {self.config_error}")
        if self.unreleased:
            lines.append(f"hidden   {self.unreleased} message(s) could not be made visible again "
                         "(they reappear after their visibility timeout)")
        if self.by_error_type:
            lines.append("by error type:")
            lines += [f"  {n:>6}  {t}" for t, n in self.by_error_type.most_common()]
        if self.park_reasons:
            lines.append("parked because:")
            lines += [f"  {n:>6}  {r}" for r, n in self.park_reasons.most_common()]
        if self.oldest:
            lines.append(f"oldest   {self.oldest}")
            lines.append(f"newest   {self.newest}")
        lines.append(f"stopped  {self.stopped_by} after {self.duration_s:.1f}s")
        lines += [f"note     {n}" for n in self.notes]
        return "\n".join(lines)


def job_text(s: dict[str, Any]) -> str:
    """A backfill or rewind summary (``reprocess.job.Job.summary``) for people."""
    src = s.get("source") or {}
    lines = [f"{s.get('kind')} of {s.get('consumer')}  job {s.get('job_id', '-')}  "
             f"({s.get('status')}{', dry run' if s.get('dry_run') else ''})"]
    if s.get("kind") == "backfill":
        lines.append(f"table    {src.get('table')}: {src.get('segments')} segment(s), "
                     f"about {src.get('itemCount')} items, rate {src.get('rate') or 'unlimited'} RCU/s")
        if s.get("status") == "planned":
            est = s.get("estimate") or {}
            lines.append(f"estimate {est.get('readCapacityUnits')} read capacity units"
                         + (f", about {est['secondsAtRate']}s at the rate" if est.get("secondsAtRate") else ""))
    else:
        lines.append(f"stream   {src.get('streamArn')}")
        lines.append(f"range    {src.get('since')} .. {src.get('until')} in {src.get('windows')} window(s) of "
                     f"{src.get('windowS')}s, {src.get('shards')} shard(s) in {s.get('parts')} lineage(s), "
                     f"{src.get('mode')} mode")
    if "taken" in s:
        lines.append(f"{'read':<16}{s.get('read')}" + (f" ({s.get('skipped')} outside the range)"
                                                       if s.get("skipped") else ""))
        verb = "would run" if s.get("dry_run") else "taken"
        lines.append(f"{verb:<16}{s.get('taken')}")
        if not s.get("dry_run"):
            lines.append(f"{'handled':<16}{s.get('handled')}")
            lines.append(f"{'captured':<16}{s.get('captured')}  (failures, in the failure queue with attempts)")
    if s.get("by_event"):
        lines.append("by event:  " + ", ".join(f"{k} {v}" for k, v in s["by_event"].items()))
    if s.get("by_error_type"):
        lines.append("by error type:")
        lines += [f"  {n:>6}  {t}" for t, n in s["by_error_type"].items()]
    if s.get("consumed_rcu"):
        lines.append(f"{'consumed':<16}{s['consumed_rcu']} RCU over {s.get('pages')} page(s)")
    if s.get("part_status"):
        lines.append("parts    " + ", ".join(f"{k} {v}" for k, v in s["part_status"].items()))
    if s.get("stopped_by"):
        lines.append(f"stopped  {s['stopped_by']}")
    lines += [f"problem  {p}" for p in s.get("problems") or []]
    lines += [f"note     {n}" for n in s.get("notes") or []]
    if s.get("status") in ("paused", "failed", "running") and s.get("job_id"):
        lines.append(f"resume   reprocess.py {s.get('kind')} --consumer {s.get('consumer')} --resume {s['job_id']}"
                     + (f" --checkpoints {s['checkpoints']}" if s.get("checkpoints") else ""))
    return "\n".join(lines)
