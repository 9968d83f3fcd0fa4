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

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from consumers.registry import REPROCESS_MODES, Consumer, UnknownConsumerError, get_consumer
from streamkit import retry
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
    "where the reprocess Lambda stores the summary of a run the operator API started (jobs/<jobId>.json); "
    "default FAILURE_BUCKET",
)
# What the worker reads, wherever it runs (the CLI, the Lambda, an operator API job).
SETTINGS = (USERS_TABLE, *retry.SETTINGS)
# What the reprocess Lambda reads besides (handlers/reprocess.py checks all at cold start).
LAMBDA_ONLY_SETTINGS = (REPROCESS_MARGIN_MS, JOBS_BUCKET)
LAMBDA_SETTINGS = (*SETTINGS, *LAMBDA_ONLY_SETTINGS)

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
               "maxAttempts": "max_attempts"}
API_FIELDS = ("max", "mode", "dryRun", "concurrency")
EVENT_FIELDS = ("consumer", "jobId", *WIRE_FIELDS)


class OptionsError(ConfigError):
    """A drain option is missing or out of range; the message names the field and its range."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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

    def __post_init__(self) -> None:
        if not isinstance(self.consumer, str) or not self.consumer:
            raise OptionsError('consumer must be a consumer name, e.g. {"consumer": "search-indexer"}')
        try:
            get_consumer(self.consumer)
        except UnknownConsumerError as exc:
            raise OptionsError(str(exc)) from None
        if self.mode is not None and self.mode not in REPROCESS_MODES:
            raise OptionsError(f"mode must be one of {', '.join(REPROCESS_MODES)}, got {self.mode!r}")
        if not isinstance(self.dry_run, bool):
            raise OptionsError(f"dryRun must be true or false, got {self.dry_run!r}")
        for name, (label, low, high) in LIMITS.items():
            value = getattr(self, name)
            if value is None and name in ("max_messages", "receives_per_round", "max_retries"):
                continue
            if not _is_int(value) or not low <= value <= high:
                raise OptionsError(f"{label} must be an integer from {low} to {high}, got {value!r}")
        for name in ("time_budget_s", "retry_base_delay_s", "retry_max_delay_s"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                raise OptionsError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("queue_url", "parking_queue_url", "users_table"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise OptionsError(f"{name} must be a string, got {value!r}")

    # ---- entry points --------------------------------------------------------------------
    @classmethod
    def from_wire(cls, data: Any, *, consumer: str | None = None,
                  allowed: tuple[str, ...] = EVENT_FIELDS) -> DrainOptions:
        """Options from a JSON object (the Lambda event, the API body); unknown fields are errors."""
        if not isinstance(data, Mapping):
            raise OptionsError('expected a JSON object like {"max": 100, "mode": "replay", "dryRun": true}')
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            shown = [f for f in allowed if f not in ("consumer", "jobId")]
            raise OptionsError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(shown)}")
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
            max_retries=backoff.max_retries if self.max_retries is None else self.max_retries,
            retry_base_delay_s=backoff.base_delay_s if self.retry_base_delay_s is None else self.retry_base_delay_s,
            retry_max_delay_s=backoff.max_delay_s if self.retry_max_delay_s is None else self.retry_max_delay_s,
        )


OPTION_NAMES = frozenset(f.name for f in fields(DrainOptions))
