"""Search sinks for the search-indexer: OpenSearch (http/https) or SQLite FTS5 (sqlite:///path).

Both keep, per user, the stream sequence number of the last record applied and refuse to let
an older record overwrite a newer one (records can arrive out of order on redelivery and
reprocessing). REMOVE leaves a tombstone (``deleted: true`` + its sequence number) rather
than deleting the document outright: otherwise a late, older INSERT/MODIFY would resurrect
a removed user. Searches never return tombstones.

Sequence numbers are decimal strings of varying length (21-40 digits on AWS); they are
compared as integers, by zero-padding to ``SEQ_WIDTH`` digits so text order = numeric order.
"""
from __future__ import annotations

from typing import Any, Protocol

from streamkit.settings import Setting

SEQ_WIDTH = 48
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


def seq_key(seq: str | int) -> str:
    """``"123"`` -> ``"000...0123"`` (``SEQ_WIDTH`` digits): compares like the integer."""
    text = str(seq).strip()
    if not text.isdigit() or len(text.lstrip("0")) > SEQ_WIDTH:
        from streamkit import PermanentError

        raise PermanentError(f"sequence number {seq!r} is not a decimal number of at most {SEQ_WIDTH} digits")
    return text.zfill(SEQ_WIDTH)


class SearchSink(Protocol):
    def put(self, doc_id: str, doc: dict, seq: str) -> str:
        """Write unless a newer sequence number is stored; returns ``"written"`` or ``"stale"``."""

    def remove(self, doc_id: str, seq: str) -> str:
        """Tombstone unless a newer sequence number is stored; ``"written"`` or ``"stale"``."""

    def get(self, doc_id: str) -> dict | None:
        """The stored document (tombstones included, with ``deleted``/``seq``), or ``None``."""

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
