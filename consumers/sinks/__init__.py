"""Search sinks for the search-indexer: OpenSearch (http/https) or SQLite FTS5 (sqlite:///path).

Both keep, per user, the ``change_order`` of the last change applied (``streamkit.ordering``:
it orders the changes of one item on DynamoDB Streams and on Kinesis, where a change may come
twice or two changes of one item out of order) and refuse to let an older or equal one
overwrite it. REMOVE leaves a tombstone (``deleted: true`` + its order) rather than deleting
the document outright: otherwise a late, older INSERT/MODIFY would resurrect a removed user.
Searches never return tombstones.

Documents written before ``change_order`` existed carry only ``seq`` (a padded DynamoDB
Streams sequence number, which cannot be compared with a time-based order): they count as
older than any change, so the next change of that user replaces them and the index migrates
itself one user at a time. Documents also keep ``sequence_number`` (the stream position of
the change applied, for people reading them).
"""
from __future__ import annotations

from typing import Any, Protocol

from streamkit.settings import Setting

__all__ = ["SearchSink", "open_sink", "check_order", "check_url", "SEARCH_TIMEOUT_S"]

URL_SCHEMES = ("sqlite:", "http://", "https://")
SEARCH_TIMEOUT_S = Setting(
    "SEARCH_TIMEOUT_S", "timeout of one OpenSearch request, in seconds",
    parse=float, default=5.0, low=0.1, high=120,
)


def check_url(url: str) -> str:
    """``url`` when it names a sink we have; ``ValueError`` saying which ones otherwise."""
    if not url.startswith(URL_SCHEMES):
        raise ValueError("expected http(s)://<opensearch host> or sqlite:///<path>")
    return url


def check_order(order: str) -> str:
    """A ``change_order`` as the sinks store it; ``PermanentError`` for anything else."""
    if not isinstance(order, str) or "." not in order or not order.replace(".", "", 1).isdigit():
        from streamkit import PermanentError

        raise PermanentError(f"change order {order!r} is not a streamkit change_order")
    return order


class SearchSink(Protocol):
    def put(self, doc_id: str, doc: dict, order: str, sequence_number: str | None = None) -> str:
        """Write unless a newer or equal change is stored; returns ``"written"`` or ``"stale"``."""

    def remove(self, doc_id: str, order: str, sequence_number: str | None = None) -> str:
        """Tombstone unless a newer or equal change is stored; ``"written"`` or ``"stale"``."""

    def get(self, doc_id: str) -> dict | None:
        """The stored document (tombstones included, with ``deleted``/``change_order``), or ``None``."""

    def search(self, query: str, limit: int = 10) -> list[dict]:
        """Live documents matching ``query`` (prefix match on name/email/other text)."""


def open_sink(url: str, index: str) -> Any:
    """The sink for ``url``: ``sqlite:///rel/path``, ``sqlite:////abs/path`` or ``http(s)://host``."""
    try:
        check_url(url)
    except ValueError as exc:
        from streamkit import ConfigError

        raise ConfigError(f"SEARCH_URL={url!r}: {exc}") from None
    if url.startswith("sqlite:"):
        from .sqlite_fts import SqliteSink

        return SqliteSink.from_url(url, index)
    from .opensearch import OpenSearchSink

    return OpenSearchSink.from_url(url, index)
