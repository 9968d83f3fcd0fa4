"""Reprocess CLI (contract 6): drain a consumer's failure queue through its handle_record.

    python reprocess/reprocess.py --consumer NAME [--queue-url URL] [--max N] [--dry-run]
        [--mode replay|latest] [--json] [--concurrency N]
    python reprocess/reprocess.py backfill --consumer NAME [--segments N] [--rate R] [--json]
    python reprocess/reprocess.py rewind --consumer NAME --since ISO8601 [--until ISO8601] [--json]
    python reprocess/reprocess.py jobs show|cancel JOB_ID

(the subcommands live in ``reprocess/jobcli.py``).

Exit codes: 0 everything taken succeeded (or a dry run), 1 failures remain or were parked,
2 bad usage or configuration. It always terminates.
"""
from __future__ import annotations

import os
import sys

# Run as a plain script path: Python put reprocess/ first on sys.path, where this very file
# would shadow the ``reprocess`` package. Put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from reprocess.options import DrainOptions


def build_parser() -> argparse.ArgumentParser:
    from consumers.registry import CONSUMERS

    p = argparse.ArgumentParser(
        prog="reprocess.py",
        description="Drain a consumer's failure queue through the consumer's own handle_record.",
        epilog="Beside the drain: 'reprocess.py backfill --consumer NAME' (every item of the table as its "
               "current state), 'reprocess.py rewind --consumer NAME --since TIME' (re-run a time range of "
               "the stream), 'reprocess.py jobs show|cancel JOB_ID'. Each has --help.",
    )
    p.add_argument("--consumer", required=True, help=f"one of: {', '.join(CONSUMERS)}")
    p.add_argument("--queue-url", help="failure queue (default: {KEY}_FAILURE_QUEUE_URL, else GetQueueUrl by name)")
    p.add_argument("--parking-queue-url", help="parking queue (default: {KEY}_PARKING_QUEUE_URL, else by name)")
    p.add_argument("--max", type=int, dest="max_messages", help="take at most N messages (1 to 10000)")
    p.add_argument("--dry-run", action="store_true", help="count by error type, oldest, newest; change nothing")
    p.add_argument("--mode", help="replay or latest (default: the consumer's reprocess mode)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (for scripts)")
    p.add_argument("--concurrency", type=int, default=1, help="threads, 1 to 8; order is kept per item key (default 1)")
    p.add_argument("--max-attempts", type=int, default=None, help="park after this many attempts (default 5)")
    p.add_argument("--time-budget", type=float, default=None, help="stop taking messages after this many seconds")
    p.add_argument("--wait-seconds", type=int, default=None, help="long-poll wait per receive, 0 to 20 (default 2)")
    p.add_argument(
        "--handler",
        metavar="MODULE:FUNCTION",
        help="run this function instead of the consumer's handle_record (a hotfix, or a test consumer)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return p


def _load_handler(spec: str):
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--handler must be MODULE:FUNCTION, got {spec!r}")
    return getattr(importlib.import_module(module), name)


def _progress_bar(total: int | None):
    """A tqdm bar on a terminal (stderr), else nothing. tqdm is imported only here."""
    if not sys.stderr.isatty():
        return None, None
    try:
        from tqdm import tqdm
    except ImportError:
        return None, None
    bar = tqdm(total=total, unit="msg", desc="reprocess", file=sys.stderr)

    def update(summary) -> None:
        bar.n = summary.taken
        bar.set_postfix(ok=summary.succeeded, failing=summary.still_failing, parked=summary.parked, refresh=False)
        bar.refresh()

    return bar, update


def _logs_to_stderr() -> None:
    """Structured logs go to stderr so stdout carries only the summary (``--json``)."""
    import structlog

    from streamkit import log

    log.configure()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def _queue_depth(summary_queue_url: str) -> int | None:
    try:
        from streamkit.awsclient import make_client

        attrs = make_client("sqs").get_queue_attributes(
            QueueUrl=summary_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])
    except Exception:
        return None


def options_from_args(args: argparse.Namespace) -> DrainOptions:
    """The parsed command line as validated ``DrainOptions`` (the same limits as the Lambda
    event and the operator API); raises ``OptionsError``."""
    from reprocess.options import DrainOptions

    given = {
        "max_attempts": args.max_attempts,
        "wait_time_s": args.wait_seconds,
    }
    return DrainOptions(
        consumer=args.consumer,
        queue_url=args.queue_url,
        parking_queue_url=args.parking_queue_url,
        max_messages=args.max_messages,
        mode=args.mode,
        dry_run=args.dry_run,
        concurrency=args.concurrency,
        time_budget_s=args.time_budget,
        **{k: v for k, v in given.items() if v is not None},
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("backfill", "rewind", "jobs"):  # the subcommands beside the drain
        from reprocess import jobcli

        return jobcli.main(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for bad usage, 0 for --help
        return int(exc.code or 0)

    from reprocess.summary import EXIT_USAGE
    from reprocess.worker import Drainer
    from streamkit.errors import ConfigError

    try:
        options = options_from_args(args)
        handle_record = _load_handler(args.handler) if args.handler else None
        drainer = Drainer(options, handle_record=handle_record)
    except (ConfigError, ValueError, ImportError, AttributeError) as exc:
        print(f"reprocess: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _logs_to_stderr()
    bar = None
    if not args.no_progress and not args.json and sys.stderr.isatty():
        total = args.max_messages
        depth = _queue_depth(drainer.queue_url)
        if depth is not None:
            total = min(total, depth) if total is not None else depth
        bar, drainer.progress = _progress_bar(total)
    try:
        summary = drainer.run()
    except ConfigError as exc:
        print(f"reprocess: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, sort_keys=False))
    else:
        print(summary.to_text())
    if summary.config_error:  # where errors go, naming the fix (exit 2)
        print(f"reprocess: error: handle_record raised ConfigError: {summary.config_error}", file=sys.stderr)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
