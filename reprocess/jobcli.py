"""The ``backfill``, ``rewind`` and ``jobs`` subcommands of ``reprocess.py`` (contract 6).

    reprocess.py backfill --consumer NAME [--segments N] [--rate RCU/s] [--json] [--remote] ...
    reprocess.py rewind --consumer NAME --since ISO8601|90m [--until ...] [--window 15m] [--json] ...
    reprocess.py jobs show JOB_ID [--follow] [--json]  |  reprocess.py jobs cancel JOB_ID

Exit codes as the drain's: 0 the job finished and every record it took was handled (a dry
run: always 0), 1 failures were captured to the failure queue, or the job stopped before
the end (interrupted, cancelled, a capture refused: resume it), 2 bad usage or configuration.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

KINDS = ("backfill", "rewind", "jobs")


def _common(p: argparse.ArgumentParser) -> None:
    from consumers.registry import CONSUMERS

    p.add_argument("--consumer", required=True, help=f"one of: {', '.join(CONSUMERS)}")
    p.add_argument("--dry-run", action="store_true", help="plan and count; handle nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (for scripts)")
    p.add_argument("--concurrency", type=int, default=None, help="local threads over the parts (1 to 64)")
    p.add_argument("--remote", action="store_true",
                   help="run each part in the reprocess Lambda (REPROCESS_FUNCTION_NAME, else "
                        "<service>-<stage>-reprocess) and follow it from the jobs bucket")
    p.add_argument("--detach", action="store_true", help="with --remote: start the job, print its id, do not follow")
    p.add_argument("--function", help="the reprocess function for --remote")
    p.add_argument("--resume", metavar="JOB_ID",
                   help="continue this job from its checkpoints (a cancelled one too: its cancel is withdrawn)")
    p.add_argument("--job-id", help="name a new job (default: a random id)")
    p.add_argument("--checkpoints", metavar="s3://BUCKET|DIR",
                   help="where the job keeps its state (default: s3://$JOBS_BUCKET, else .local-state/)")
    p.add_argument("--time-budget", type=float, default=None, help="stop (resumable) after this many seconds")
    p.add_argument("--handler", metavar="MODULE:FUNCTION", help="run this instead of the consumer's handle_record")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reprocess.py", description="Backfill from the table or rewind the stream, "
                                "through the consumer's own handle_record.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backfill", help="every item of USERS_TABLE through handle_record as its current state")
    _common(b)
    b.add_argument("--segments", type=int, default=1, help="parallel Scan segments (1 to 1000; default 1)")
    b.add_argument("--rate", type=float, default=None, help="read capacity units per second for the whole job")
    b.add_argument("--page-size", type=int, default=None, help="items per Scan page (1 to 10000; default 1 MB pages)")
    r = sub.add_parser("rewind", help="re-run a time range of the consumer's source stream")
    _common(r)
    r.add_argument("--since", help="ISO-8601 time (2026-11-29T17:00:00Z) or a duration ago (90m, 6h)")
    r.add_argument("--until", help="end of the range, exclusive (default: when the job starts)")
    r.add_argument("--window", default=None, help="tumbling window, e.g. 15m (default), 1h, 300")
    r.add_argument("--mode", help="replay or latest (default: the consumer's reprocess mode)")
    r.add_argument("--stream-arn", help="the stream to read (default: USERS_TABLE's latest stream)")
    j = sub.add_parser("jobs", help="show or cancel a backfill or rewind job")
    jsub = j.add_subparsers(dest="action", required=True)
    for name, text in (("show", "the job's progress and summary"), ("cancel", "stop the job at its next checkpoints")):
        a = jsub.add_parser(name, help=text)
        a.add_argument("job_id")
        a.add_argument("--checkpoints", metavar="s3://BUCKET|DIR")
        a.add_argument("--json", action="store_true")
        if name == "show":
            a.add_argument("--follow", action="store_true", help="until it finishes")
    return p


def _options(args: argparse.Namespace) -> Any:
    from reprocess.options import BackfillOptions, RewindOptions

    if args.command == "backfill":
        return BackfillOptions(consumer=args.consumer, segments=args.segments, rate=args.rate,
                               page_size=args.page_size, concurrency=args.concurrency, dry_run=args.dry_run)
    wire = {"consumer": args.consumer, "since": args.since, "until": args.until, "window": args.window,
            "mode": args.mode, "concurrency": args.concurrency, "dryRun": args.dry_run or None,
            "streamArn": args.stream_arn}
    return RewindOptions.from_wire({k: v for k, v in wire.items() if v is not None})


class Progress:
    """A tqdm bar on stderr when it is a terminal (items for a backfill, windows for a rewind)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self._lock = threading.Lock()
        self._taken: dict[str, int] = {}
        self._windows: dict[str, int] = {}
        self._other: dict[str, tuple[int, int]] = {}

    def open(self, job: Any) -> None:
        if not self.enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            self.enabled = False
            return
        for s in job.states():
            self._record(s)
        if job.kind == "backfill":
            total = job.source.get("itemCount") or None
            self.bar = tqdm(total=total, unit="item", desc=f"backfill {job.consumer}", file=sys.stderr)
        else:
            total = job.source["windows"] * len(job.parts)
            self.bar = tqdm(total=total, unit="window", desc=f"rewind {job.consumer}", file=sys.stderr)
        self.kind = job.kind
        self._draw()

    def _record(self, state: Any) -> None:
        self._taken[state.part] = state.counts.taken
        self._windows[state.part] = state.checkpoint.get("window", 0)
        self._other[state.part] = (state.counts.handled, state.counts.captured)

    def part(self, state: Any) -> None:
        if self.bar is None:
            return
        with self._lock:
            self._record(state)
            self._draw()

    def summary(self, s: dict) -> None:
        if self.bar is None:
            return
        with self._lock:
            self.bar.n = s.get("taken", 0) if self.kind == "backfill" else self.bar.n
            self.bar.set_postfix(handled=s.get("handled"), captured=s.get("captured"), status=s.get("status"),
                                 refresh=False)
            self.bar.refresh()

    def _draw(self) -> None:
        handled = sum(h for h, _ in self._other.values())
        captured = sum(c for _, c in self._other.values())
        self.bar.n = sum(self._taken.values()) if self.kind == "backfill" else sum(self._windows.values())
        self.bar.set_postfix(taken=sum(self._taken.values()), handled=handled, captured=captured, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _print(summary: dict, as_json: bool) -> None:
    from reprocess.summary import job_text

    print(json.dumps(summary, indent=2, default=str) if as_json else job_text(summary))


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from reprocess.summary import EXIT_FAILURES, EXIT_USAGE
    from streamkit.errors import ConfigError

    try:
        if args.command == "jobs":
            return _jobs(args)
        return _run(args)
    except ConfigError as exc:
        print(f"reprocess: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURES


def _store(where: str | None) -> Any:
    from reprocess.checkpoints import open_store

    return open_store(where)


def _jobs(args: argparse.Namespace) -> int:
    from reprocess.job import Job
    from reprocess.remote import follow

    job = Job.load(_store(args.checkpoints), args.job_id)
    if args.action == "cancel":
        job.cancel(by="reprocess.py jobs cancel")
        print(f"job {job.job_id}: cancel requested; its parts stop at their next checkpoint", file=sys.stderr)
        return 0
    summary = job.summary()
    if args.follow:
        bar = Progress(not args.json)
        bar.open(job)
        try:
            summary = follow(job, progress=bar.summary)
        except KeyboardInterrupt:
            summary = job.summary()
        finally:
            bar.close()
    _print(summary, args.json)
    return summary["exit_code"]


def _run(args: argparse.Namespace) -> int:
    from reprocess.job import Job
    from reprocess.jobrun import options_of, run_job
    from reprocess.reprocess import _load_handler, _logs_to_stderr
    from reprocess.summary import EXIT_FAILURES, EXIT_USAGE
    from streamkit.deadline import Deadline

    store = _store(args.checkpoints)
    if args.resume:
        job = Job.load(store, args.resume)
        if job.kind != args.command or job.consumer != args.consumer:
            print(f"reprocess: error: job {args.resume} is a {job.kind} of {job.consumer}", file=sys.stderr)
            return EXIT_USAGE
        reopened = job.reopen()  # resuming a cancelled job is the operator's new decision
        if reopened:
            print(f"job {job.job_id}: cancel withdrawn; part(s) {', '.join(reopened)} go on from their checkpoints",
                  file=sys.stderr)
        options = options_of(job)
    else:
        if args.command == "rewind" and not args.since:
            print("reprocess: error: rewind needs --since (an ISO-8601 time or a duration ago, e.g. 2h)",
                  file=sys.stderr)
            return EXIT_USAGE
        options = _options(args)
    try:
        handle_record = _load_handler(args.handler) if args.handler else None
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"reprocess: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _logs_to_stderr()
    if args.remote and not options.dry_run:
        return _run_remote(args, options, store)
    bar = Progress(not (args.json or args.no_progress))
    stop = threading.Event()
    opened: list[Any] = []

    def on_open(job: Any) -> None:
        opened.append(job)
        print(f"{job.kind} job {job.job_id} ({len(job.parts)} part(s)); checkpoints in {job.store.location}; "
              f"resume with --resume {job.job_id}", file=sys.stderr)
        bar.open(job)

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a polite kill: checkpoint and stop
    try:
        summary = run_job(options, store=store, job_id=args.job_id, resume=args.resume, handle_record=handle_record,
                          deadline=Deadline.from_seconds(args.time_budget), stop=stop, progress=bar.part,
                          on_open=on_open)
    except KeyboardInterrupt:
        if not opened:
            return EXIT_FAILURES
        summary = opened[0].summary()
        summary["notes"] = ["interrupted: every part saved its checkpoint"]
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
    _print(summary, args.json)
    if summary["exit_code"] == EXIT_USAGE:  # handle_record raised ConfigError: say the fix where errors go
        for problem in summary.get("problems") or []:
            print(f"reprocess: error: {problem}", file=sys.stderr)
    return summary["exit_code"]


def _run_remote(args: argparse.Namespace, options: Any, store: Any) -> int:
    from reprocess.jobrun import CLIENT_OPTIONS
    from reprocess.remote import follow, function_name, launch
    from streamkit.awsclient import ClientCache

    clients = ClientCache(None, **CLIENT_OPTIONS)
    function = args.function or function_name()
    job, problems = launch(options, store=store, clients=clients, function=function, job_id=args.job_id,
                           resume=args.resume)
    print(f"{job.kind} job {job.job_id}: {len(job.parts)} part(s) invoked in {function}; state in "
          f"{store.location}", file=sys.stderr)
    for p in problems:
        print(f"reprocess: {p}", file=sys.stderr)
    if args.detach:
        print(f"follow: reprocess.py jobs show {job.job_id} --follow    cancel: reprocess.py jobs cancel {job.job_id}",
              file=sys.stderr)
        print(json.dumps({"job_id": job.job_id, "parts": len(job.parts), "problems": problems}) if args.json
              else job.job_id)
        return 1 if problems else 0
    bar = Progress(not (args.json or args.no_progress))
    bar.open(job)
    try:
        summary = follow(job, progress=bar.summary)
    except KeyboardInterrupt:
        summary = job.summary()
        summary["notes"] = [f"stopped following; the job goes on in Lambda: reprocess.py jobs show {job.job_id} "
                            "--follow"]
    finally:
        bar.close()
    if problems:
        summary.setdefault("notes", []).extend(problems)
    _print(summary, args.json)
    return summary["exit_code"]
