"""What a drain is asked to do, validated once, with one set of limits for every entry point.

The CLI (``reprocess.py``), the reprocess Lambda's event and the operator API's POST body
all end up here, so ``max: 0`` or ``concurrency: 99`` gets the same answer whoever sends it:

    DrainOptions(consumer="search-indexer", max_messages=100)          # Python / CLI
    DrainOptions.from_wire({"consumer": "crm-sync", "max": 50})         # Lambda event
    DrainOptions.from_wire(body, consumer=name, allowed=API_FIELDS)     # API body

A bad value raises ``OptionsError`` (a ``ConfigError``: exit code 2, HTTP 400) naming the
field and its range. ``None`` means "the default": the consumer's reprocess mode, and the
worker's settings (``SETTINGS``, declared here as data: ``USERS_TABLE``, and the stream
path's own retry settings ``MAX_TRANSIENT_RETRIES`` / ``RETRY_BASE_DELAY_MS`` /
``RETRY_MAX_DELAY_MS``) from the environment (``resolved()``). ``REPROCESS_MARGIN_MS`` is the
reprocess Lambda's.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.registry import REPROCESS_MODES, Consumer, UnknownConsumerError, get_consumer
from streamkit import ledger, retry
from streamkit.errors import ConfigError
from streamkit.settings import Setting, load

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_WAIT_TIME_S = 2
DEFAULT_VISIBILITY_TIMEOUT_S = 120

USERS_TABLE = Setting("USERS_TABLE", "the users table, re-read by reprocessing in latest mode (consistent GetItem)")
REPROCESS_MARGIN_MS = Setting(
    "REPROCESS_MARGIN_MS",
    "the reprocess Lambda stops taking messages this long before its deadline (a round of 10 x concurrency "
    "records plus its sends and deletes must fit)",
    parse=int, default=15_000, low=0, high=600_000,
)
JOBS_BUCKET = Setting(
    "JOBS_BUCKET",
    "where operator jobs keep their records (jobs/<jobId>/: request, status, progress, summary, cancel), "
    "read by the operator API and written by the reprocess Lambda, and backfill and rewind jobs keep their "
    "manifest and checkpoints (jobs/<jobId>/); default FAILURE_BUCKET",
)
BACKFILL_CLOCK_SKEW_MS = Setting(
    "BACKFILL_CLOCK_SKEW_MS",
    "how far this machine's clock may be ahead of DynamoDB's: a backfilled item is ordered this much before "
    "it was read, so a change made after the read always wins (a backfill refuses to start beyond it)",
    parse=int, default=5_000, low=0, high=600_000,
)
REPROCESS_FUNCTION_NAME = Setting(
    "REPROCESS_FUNCTION_NAME",
    "the reprocess Lambda that 'reprocess.py backfill|rewind --remote' (and the operator API) invoke; "
    "default <SERVICE_NAME>-<STAGE>-reprocess",
)
STREAM_ARN = Setting(
    "STREAM_ARN",
    "the stream the consumers read (serverless.yml's plugin sets it: the users table's DynamoDB stream, or the "
    "Kinesis stream it publishes to); a rewind reads it; default: USERS_TABLE's latest DynamoDB stream",
)
# What the worker reads, wherever it runs (the CLI, the Lambda, an operator API job).
SETTINGS = (USERS_TABLE, *retry.SETTINGS, *ledger.SETTINGS)
# What the reprocess Lambda reads besides (handlers/reprocess.py checks all at cold start).
LAMBDA_ONLY_SETTINGS = (REPROCESS_MARGIN_MS, JOBS_BUCKET)
# What backfill and rewind jobs read besides (JOBS_BUCKET too, wherever they run).
JOB_SETTINGS = (STREAM_ARN, BACKFILL_CLOCK_SKEW_MS, REPROCESS_FUNCTION_NAME)
LAMBDA_SETTINGS = (*SETTINGS, *LAMBDA_ONLY_SETTINGS, BACKFILL_CLOCK_SKEW_MS, STREAM_ARN)

# field -> (name on the wire, lowest, highest): the one set of limits
LIMITS: dict[str, tuple[str, int, int]] = {
    "max_messages": ("max", 1, 10_000),
    "concurrency": ("concurrency", 1, 8),
    "max_attempts": ("maxAttempts", 1, 100),
    "wait_time_s": ("waitSeconds", 0, 20),  # SQS long polling's range
    "visibility_timeout_s": ("visibilityTimeout", 0, 43_200),  # SQS's range
    "receives_per_round": ("receivesPerRound", 1, 10),
    "max_retries": ("maxRetries", 0, 10),
}
# wire name -> field, for the Lambda event and the API body
WIRE_FIELDS = {"max": "max_messages", "mode": "mode", "dryRun": "dry_run", "concurrency": "concurrency",
               "maxAttempts": "max_attempts", "jobId": "job_id"}
API_FIELDS = ("max", "mode", "dryRun", "concurrency")
EVENT_FIELDS = ("consumer", "jobId", *WIRE_FIELDS)  # (+ "kind": "drain", taken off by the handler)


_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class OptionsError(ConfigError):
    """A drain option is missing or out of range; the message names the field and its range."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_limits(options: Any, limits: Mapping[str, tuple[str, int, int]], optional: tuple[str, ...] = ()) -> None:
    for name, (label, low, high) in limits.items():
        value = getattr(options, name)
        if value is None and name in optional:
            continue
        if not _is_int(value) or not low <= value <= high:
            raise OptionsError(f"{label} must be an integer from {low} to {high}, got {value!r}")


def _check_seconds(options: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(options, name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise OptionsError(f"{name} must be a number of seconds >= 0, got {value!r}")


def _check_strings(options: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            raise OptionsError(f"{name} must be a string, got {value!r}")


def _check_consumer(consumer: Any) -> None:
    if not isinstance(consumer, str) or not consumer:
        raise OptionsError('consumer must be a consumer name, e.g. {"consumer": "search-indexer"}')
    try:
        get_consumer(consumer)
    except UnknownConsumerError as exc:
        raise OptionsError(str(exc)) from None


def _check_wire(data: Any, allowed: tuple[str, ...], example: str) -> None:
    if not isinstance(data, Mapping):
        raise OptionsError(f"expected a JSON object like {example}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        shown = [f for f in allowed if f not in ("consumer", "jobId", "kind", "part", "resume", "continuation")]
        raise OptionsError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(shown)}")


@dataclass(frozen=True)
class DrainOptions:
    consumer: str
    queue_url: str | None = None  # None: <KEY>_FAILURE_QUEUE_URL, else by name
    parking_queue_url: str | None = None
    max_messages: int | None = None  # None: until the queue is empty
    mode: str | None = None  # None: the consumer's reprocess mode
    dry_run: bool = False
    concurrency: int = 1
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    time_budget_s: float | None = None
    wait_time_s: int = DEFAULT_WAIT_TIME_S
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
    receives_per_round: int | None = None  # None: ceil(concurrency / 2)
    users_table: str | None = None  # None: USERS_TABLE
    max_retries: int | None = None  # None: MAX_TRANSIENT_RETRIES
    retry_base_delay_s: float | None = None  # None: RETRY_BASE_DELAY_MS
    retry_max_delay_s: float | None = None  # None: RETRY_MAX_DELAY_MS
    ledger_table: str | None = None  # None: LEDGER_TABLE (unset there too: no ledger updates)
    job_id: str | None = None  # the operator job this run belongs to (the ledger's "settled by")

    def __post_init__(self) -> None:
        _check_consumer(self.consumer)
        if self.mode is not None and self.mode not in REPROCESS_MODES:
            raise OptionsError(f"mode must be one of {', '.join(REPROCESS_MODES)}, got {self.mode!r}")
        if not isinstance(self.dry_run, bool):
            raise OptionsError(f"dryRun must be true or false, got {self.dry_run!r}")
        _check_limits(self, LIMITS, optional=("max_messages", "receives_per_round", "max_retries"))
        _check_seconds(self, ("time_budget_s", "retry_base_delay_s", "retry_max_delay_s"))
        if self.job_id is not None and (not isinstance(self.job_id, str) or not _JOB_ID.fullmatch(self.job_id)):
            raise OptionsError(f"jobId must be 1 to 64 letters, digits, '-' or '_', got {self.job_id!r}")
        _check_strings(self, ("queue_url", "parking_queue_url", "users_table", "ledger_table"))

    # ---- entry points --------------------------------------------------------------------
    @classmethod
    def from_wire(cls, data: Any, *, consumer: str | None = None,
                  allowed: tuple[str, ...] = EVENT_FIELDS) -> DrainOptions:
        """Options from a JSON object (the Lambda event, the API body); unknown fields are errors."""
        _check_wire(data, allowed, '{"max": 100, "mode": "replay", "dryRun": true}')
        values = {WIRE_FIELDS[k]: v for k, v in data.items() if k in WIRE_FIELDS and v is not None}
        values["consumer"] = consumer if consumer is not None else data.get("consumer")  # checked below
        return cls(**values)

    # ---- derived ---------------------------------------------------------------------------
    @property
    def spec(self) -> Consumer:
        return get_consumer(self.consumer)

    @property
    def effective_mode(self) -> str:
        return self.mode or self.spec.reprocess_mode

    @property
    def needs_users_table(self) -> bool:
        """``latest`` mode re-reads items from the users table (a dry run reads nothing)."""
        return self.effective_mode == "latest" and not self.dry_run

    @property
    def round_receives(self) -> int:
        """Receives per round (10 messages each): one per 2 worker threads unless set."""
        return self.receives_per_round or max(1, -(-self.concurrency // 2))

    def resolved(self, env: Mapping[str, str] | None = None) -> DrainOptions:
        """Every ``None`` that the environment decides, filled in from ``SETTINGS`` (validated:
        one ``ConfigError`` naming each bad variable and its fix)."""
        values = load(SETTINGS, env, owner="reprocess")
        backoff = retry.RetryConfig.from_values(values)
        return replace(
            self,
            users_table=self.users_table or values["USERS_TABLE"] or None,
            ledger_table=self.ledger_table or values["LEDGER_TABLE"] or None,
            max_retries=backoff.max_retries if self.max_retries is None else self.max_retries,
            retry_base_delay_s=backoff.base_delay_s if self.retry_base_delay_s is None else self.retry_base_delay_s,
            retry_max_delay_s=backoff.max_delay_s if self.retry_max_delay_s is None else self.retry_max_delay_s,
        )


OPTION_NAMES = frozenset(f.name for f in fields(DrainOptions))


# ---- backfill and rewind: the job kinds beside the drain -----------------------------------
# The same rule as the drain: one validated object per job, whoever asks (CLI, the reprocess
# Lambda's event, the operator API's body), one set of limits, the same messages.

JOB_KINDS = ("backfill", "rewind")
DEFAULT_WINDOW_S = 900  # --window 15m
DEFAULT_JOB_CONCURRENCY = 16  # local threads over a job's parts (segments, shard lineages): one each, up to this

JOB_LIMITS: dict[str, tuple[str, int, int]] = {
    "segments": ("segments", 1, 1000),  # parallel Scan segments (TotalSegments); remote: one Lambda each
    "page_size": ("pageSize", 1, 10_000),  # Scan Limit per page (None: 1 MB pages, or sized to --rate)
    "concurrency": ("concurrency", 1, 64),  # local threads over the parts
    "window_s": ("window", 1, 7 * 86_400),  # rewind's tumbling window, in seconds
    "max_retries": LIMITS["max_retries"],
}
MAX_RATE = 1_000_000.0  # RCU/s: far above any table, below float nonsense
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400}


def parse_duration(value: Any, label: str = "window") -> int:
    """``900``, ``"900s"``, ``"15m"``, ``"6h"``, ``"1d"`` -> whole seconds (``OptionsError`` otherwise)."""
    if _is_int(value):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m:
        raise OptionsError(f"{label} must be a duration like 900, 90s, 15m, 6h or 1d, got {value!r}")
    return int(float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()])


def parse_when(value: Any, label: str, now: datetime) -> datetime:
    """An ISO-8601 time (``2026-11-29T17:00:00Z``; no zone means UTC) or a duration ago
    (``"90m"``: 90 minutes before ``now``), as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    from streamkit.timefmt import parse_iso

    when = parse_iso(value) if isinstance(value, str) else None
    if when is not None:
        return when.astimezone(UTC)
    if isinstance(value, str) and _DURATION.match(value):
        return now - timedelta(seconds=parse_duration(value, label))
    raise OptionsError(f"{label} must be an ISO-8601 time (2026-11-29T17:00:00Z) or a duration ago (90m, 6h), "
                       f"got {value!r}")


@dataclass(frozen=True)
class BackfillOptions:
    """Feed every item of the users table through ``handle_record`` as its current state."""

    consumer: str
    segments: int = 1
    rate: float | None = None  # read capacity units per second for the whole job; None: unlimited
    page_size: int | None = None
    concurrency: int | None = None  # None: min(segments, DEFAULT_JOB_CONCURRENCY)
    dry_run: bool = False
    users_table: str | None = None  # None: USERS_TABLE
    max_retries: int | None = None  # None: MAX_TRANSIENT_RETRIES
    retry_base_delay_s: float | None = None  # None: RETRY_BASE_DELAY_MS
    retry_max_delay_s: float | None = None  # None: RETRY_MAX_DELAY_MS

    kind = "backfill"

    def __post_init__(self) -> None:
        _check_consumer(self.consumer)
        _check_limits(self, JOB_LIMITS_BACKFILL, optional=("page_size", "concurrency", "max_retries"))
        if self.rate is not None and (not isinstance(self.rate, (int, float)) or isinstance(self.rate, bool)
                                      or not 0 < self.rate <= MAX_RATE):
            raise OptionsError(f"rate must be a number of read capacity units per second above 0 and at most "
                               f"{MAX_RATE:.0f}, got {self.rate!r}")
        if not isinstance(self.dry_run, bool):
            raise OptionsError(f"dryRun must be true or false, got {self.dry_run!r}")
        _check_seconds(self, ("retry_base_delay_s", "retry_max_delay_s"))
        _check_strings(self, ("users_table",))

    @classmethod
    def from_wire(cls, data: Any, *, consumer: str | None = None,
                  allowed: tuple[str, ...] | None = None) -> BackfillOptions:
        allowed = allowed or BACKFILL_EVENT_FIELDS
        _check_wire(data, allowed, '{"segments": 4, "rate": 100, "dryRun": true}')
        values = {BACKFILL_WIRE[k]: v for k, v in data.items() if k in BACKFILL_WIRE and v is not None}
        values["consumer"] = consumer if consumer is not None else data.get("consumer")
        return cls(**values)

    def to_wire(self) -> dict:
        out = {w: getattr(self, f) for w, f in BACKFILL_WIRE.items() if getattr(self, f) not in (None, False)}
        return {"kind": self.kind, "consumer": self.consumer, **out}

    @property
    def spec(self) -> Consumer:
        return get_consumer(self.consumer)

    @property
    def threads(self) -> int:
        return self.concurrency or min(self.segments, DEFAULT_JOB_CONCURRENCY)

    def resolved(self, env: Mapping[str, str] | None = None) -> BackfillOptions:
        return replace(self, **_resolved_common(self, env))


@dataclass(frozen=True)
class RewindOptions:
    """Re-run ``[since, until)`` of the consumer's source stream in tumbling windows."""

    consumer: str
    since: datetime | None = None
    until: datetime | None = None  # None: when the job starts
    window_s: int = DEFAULT_WINDOW_S
    mode: str | None = None  # None: the consumer's reprocess mode
    concurrency: int | None = None  # None: min(parts, DEFAULT_JOB_CONCURRENCY)
    dry_run: bool = False
    stream_arn: str | None = None  # None: STREAM_ARN, else the users table's latest DynamoDB stream
    users_table: str | None = None
    max_retries: int | None = None
    retry_base_delay_s: float | None = None
    retry_max_delay_s: float | None = None

    kind = "rewind"

    def __post_init__(self) -> None:
        _check_consumer(self.consumer)
        for label in ("since", "until"):
            value = getattr(self, label)
            if value is not None and not (isinstance(value, datetime) and value.tzinfo):
                raise OptionsError(f"{label} must be an aware datetime (use RewindOptions.from_wire for text)")
        if self.since is None:
            raise OptionsError("since is required: an ISO-8601 time or a duration ago, e.g. --since 2h")
        if self.until is not None and self.until <= self.since:
            raise OptionsError(f"until ({_iso(self.until)}) must be after since ({_iso(self.since)})")
        _check_limits(self, JOB_LIMITS_REWIND, optional=("concurrency", "max_retries"))
        if self.mode is not None and self.mode not in REPROCESS_MODES:
            raise OptionsError(f"mode must be one of {', '.join(REPROCESS_MODES)}, got {self.mode!r}")
        if not isinstance(self.dry_run, bool):
            raise OptionsError(f"dryRun must be true or false, got {self.dry_run!r}")
        _check_seconds(self, ("retry_base_delay_s", "retry_max_delay_s"))
        _check_strings(self, ("stream_arn", "users_table"))

    @classmethod
    def from_wire(cls, data: Any, *, consumer: str | None = None, allowed: tuple[str, ...] | None = None,
                  now: datetime | None = None) -> RewindOptions:
        """``since``/``until`` as ISO-8601 or a duration ago (a schedule's ``"since": "75m"``),
        resolved against ``now``; ``window`` as seconds or a duration (``"15m"``)."""
        allowed = allowed or REWIND_EVENT_FIELDS
        _check_wire(data, allowed, '{"since": "2026-11-29T17:00:00Z", "window": "15m"}')
        now = now or datetime.now(UTC)
        values: dict[str, Any] = {REWIND_WIRE[k]: v for k, v in data.items() if k in REWIND_WIRE and v is not None}
        for label in ("since", "until"):
            if label in values:
                values[label] = parse_when(values[label], label, now)
        if "window_s" in values:
            values["window_s"] = parse_duration(values["window_s"])
        values["consumer"] = consumer if consumer is not None else data.get("consumer")
        return cls(**values)

    def to_wire(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind, "consumer": self.consumer}
        for wire, name in REWIND_WIRE.items():
            value = getattr(self, name)
            if value in (None, False):
                continue
            out[wire] = _iso(value) if isinstance(value, datetime) else value
        return out

    @property
    def spec(self) -> Consumer:
        return get_consumer(self.consumer)

    @property
    def effective_mode(self) -> str:
        return self.mode or self.spec.reprocess_mode

    def threads(self, parts: int) -> int:
        return self.concurrency or max(1, min(parts, DEFAULT_JOB_CONCURRENCY))

    def resolved(self, env: Mapping[str, str] | None = None) -> RewindOptions:
        return replace(self, **_resolved_common(self, env))


JOB_LIMITS_BACKFILL = {k: JOB_LIMITS[k] for k in ("segments", "page_size", "concurrency", "max_retries")}
JOB_LIMITS_REWIND = {k: JOB_LIMITS[k] for k in ("window_s", "concurrency", "max_retries")}
BACKFILL_WIRE = {"segments": "segments", "rate": "rate", "pageSize": "page_size", "concurrency": "concurrency",
                 "dryRun": "dry_run"}
REWIND_WIRE = {"since": "since", "until": "until", "window": "window_s", "mode": "mode",
               "concurrency": "concurrency", "dryRun": "dry_run", "streamArn": "stream_arn"}
# what a job's Lambda event may carry besides its options: who started it and which part to run
JOB_EVENT_EXTRAS = ("kind", "consumer", "jobId", "part", "resume", "continuation")
BACKFILL_EVENT_FIELDS = (*JOB_EVENT_EXTRAS, *BACKFILL_WIRE)
REWIND_EVENT_FIELDS = (*JOB_EVENT_EXTRAS, *REWIND_WIRE)
BACKFILL_API_FIELDS = ("segments", "rate", "pageSize", "dryRun")
REWIND_API_FIELDS = ("since", "until", "window", "mode", "dryRun")
JobOptions = BackfillOptions | RewindOptions


def job_options_from_wire(data: Any, **kwargs: Any) -> JobOptions:
    """A job's options from its Lambda event (``"kind": "backfill" | "rewind"``)."""
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if kind == "backfill":
        return BackfillOptions.from_wire(data, **kwargs)
    if kind == "rewind":
        return RewindOptions.from_wire(data, **kwargs)
    raise OptionsError(f"kind must be one of drain, {', '.join(JOB_KINDS)}, got {kind!r}")


def _resolved_common(options: Any, env: Mapping[str, str] | None) -> dict[str, Any]:
    """The worker's settings (``SETTINGS``) for a job's ``None`` fields, as a drain gets them."""
    values = load(SETTINGS, env, owner="reprocess")
    backoff = retry.RetryConfig.from_values(values)
    return {
        "users_table": options.users_table or values["USERS_TABLE"] or None,
        "max_retries": backoff.max_retries if options.max_retries is None else options.max_retries,
        "retry_base_delay_s": backoff.base_delay_s if options.retry_base_delay_s is None else options.retry_base_delay_s,
        "retry_max_delay_s": backoff.max_delay_s if options.retry_max_delay_s is None else options.retry_max_delay_s,
    }


def _iso(value: datetime) -> str:
    from streamkit.timefmt import iso

    return iso(value)
