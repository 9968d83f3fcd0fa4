"""ISO-8601 timestamps as every file, envelope and API answer of ours writes them:
UTC, milliseconds, a ``Z`` suffix (``2026-11-29T17:24:28.123Z``)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso_from_epoch(seconds: float | int | str | None) -> str | None:
    """Epoch seconds (as Lambda and DynamoDB Streams send them) -> ISO, ``None`` if absent."""
    if seconds is None or seconds == "":
        return None
    return iso(datetime.fromtimestamp(float(seconds), tz=UTC))


def iso_from_ms(ms: int | str | None) -> str | None:
    """Epoch milliseconds (SQS's ``SentTimestamp``) -> ISO, ``None`` if absent."""
    if ms is None or ms == "":
        return None
    return iso(datetime.fromtimestamp(int(ms) / 1000, tz=UTC))


def parse_iso(value: Any) -> datetime | None:
    """An aware datetime from our ISO text (or any ISO-8601), ``None`` when it isn't one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def age_words(seconds: float) -> str:
    """An age as a person reads it ("45 s", "12 min", "3.5 h", "3.0 days"); the operator page's
    ``fmtAge`` (opsapi/static/app.js) writes the same units."""
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def widen(oldest: str | None, newest: str | None, when: str | None) -> tuple[str | None, str | None]:
    """The (oldest, newest) span of ISO times grown to include ``when`` (ISO strings of one
    format order as text, so no parsing)."""
    if not when:
        return oldest, newest
    return (when if oldest is None or when < oldest else oldest,
            when if newest is None or when > newest else newest)
