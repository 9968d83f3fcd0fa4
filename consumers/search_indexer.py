"""search-indexer: keep a search index of users (INSERT/MODIFY upsert, REMOVE tombstone).

Sink from ``SEARCH_URL``: ``http(s)://`` -> OpenSearch (SigV4 on AWS hosts),
``sqlite:///path`` -> embedded SQLite FTS5. Index/table name ``SEARCH_INDEX`` (default
``users``). Without ``SEARCH_URL``, local runs use ``sqlite:///.local-state/search.sqlite3``; in
Lambda that is a configuration error. Out-of-order records never overwrite newer state
(see ``consumers.sinks``: the guard compares ``StreamRecord.change_order``). The user's name goes
through ``consumers.users`` (the schema
story: ``USER_SCHEMA_MODE=legacy`` reproduces the v1 KeyError).

CLI (for the demo): ``python -m consumers.search_indexer search "ada" [--json] [--limit N]``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from streamkit import ConfigError, StreamRecord
from streamkit.settings import IN_LAMBDA, Setting

from .sinks import SEARCH_TIMEOUT_S, check_url
from .users import USER_SCHEMA_MODE, display_name, plain, user_id

CONSUMER = "search-indexer"
DEFAULT_LOCAL_URL = "sqlite:///.local-state/search.sqlite3"  # where `python -m local` keeps it
SEARCH_URL = Setting(
    "SEARCH_URL",
    "the search sink: OpenSearch (SigV4 on AWS hosts; user:pass@ in the URL otherwise) or a SQLite "
    "FTS5 file (sqlite:///relative.db, sqlite:////abs.db); unset outside Lambda: where `python -m local` writes",
    parse=check_url, default=DEFAULT_LOCAL_URL, required=IN_LAMBDA,
    expect="an http(s):// or sqlite:/// URL",
    hint="https://(OpenSearch endpoint), in serverless.yml",
)
SEARCH_INDEX = Setting("SEARCH_INDEX", "index name (SQLite: table prefix)", default="users")
SETTINGS = (SEARCH_URL, SEARCH_INDEX, SEARCH_TIMEOUT_S, USER_SCHEMA_MODE)
# Item fields copied into the document as they are (the name is built from the schema).
DOC_FIELDS = ("email", "plan", "created_at", "company", "country")

_sinks: dict[tuple[str, str], Any] = {}


def search_url() -> str:
    return SEARCH_URL.require(owner=CONSUMER)


def get_sink() -> Any:
    """The sink for the current SEARCH_URL/SEARCH_INDEX, created once per process."""
    key = (search_url(), SEARCH_INDEX.read())
    sink = _sinks.get(key)
    if sink is None:
        from .sinks import open_sink

        sink = _sinks[key] = open_sink(*key)
    return sink


def warm_up() -> None:
    """Import the configured sink's client now (Lambda init phase), not on the first record."""
    url = search_url()
    if url.startswith(("http://", "https://")):
        from .sinks import opensearch  # noqa: F401


def slowest_call_s() -> float:
    """The longest one index write can take (the stream loop's deadline margin covers it):
    OpenSearch's timeout for the connect and again for the answer; SQLite's busy timeout."""
    if search_url().startswith(("http://", "https://")):
        return 2 * SEARCH_TIMEOUT_S.read()
    from .sinks.sqlite_fts import BUSY_TIMEOUT_S

    return float(BUSY_TIMEOUT_S)


def build_document(item: Mapping[str, Any], uid: str | None = None) -> dict:
    """The searchable document for a user item (raises KeyError on v2 items in legacy mode).
    Reads only the fields it copies: a record's ``LazyImage`` decodes nothing else."""
    doc = {"user_id": str(item["user_id"] if uid is None else uid), "name": display_name(item)}
    for field in DOC_FIELDS:
        if item.get(field) is not None:
            doc[field] = plain(item[field])
    return doc


def handle_record(record: StreamRecord) -> None:
    """Apply one stream record to the index; older-than-stored records are skipped silently."""
    uid = user_id(record.keys)
    order = record.change_order  # orders this user's changes on both sources (streamkit.ordering)
    if record.event_name == "REMOVE":
        get_sink().remove(uid, order, record.sequence_number)
        return
    item = record.new_image
    if item is None:
        from streamkit import PermanentError

        raise PermanentError(f"{record.event_name} without NewImage: the stream view type must include new images")
    get_sink().put(uid, build_document(item, uid), order, record.sequence_number)


def search(query: str, limit: int = 10) -> list[dict]:
    """Live users matching ``query`` (the demo's ``search "ada"``)."""
    return get_sink().search(query, limit)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m consumers.search_indexer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="query the index (SEARCH_URL / SEARCH_INDEX)")
    s.add_argument("query")
    s.add_argument("--limit", type=int, default=10)
    s.add_argument("--json", action="store_true")
    s.add_argument("--url", help="overrides SEARCH_URL")
    g = sub.add_parser("get", help="show one stored document (tombstones too)")
    g.add_argument("user_id")
    g.add_argument("--url", help="overrides SEARCH_URL")
    args = parser.parse_args(argv)
    if args.url:
        os.environ["SEARCH_URL"] = args.url
    try:
        if args.command == "get":
            print(json.dumps(get_sink().get(args.user_id), indent=2, default=str))
            return 0
        hits = search(args.query, args.limit)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    if args.json:
        print(json.dumps(hits, default=str))
    else:
        for h in hits:
            print(f"{h.get('user_id')}\t{h.get('name')}\t{h.get('email', '')}\t{h.get('plan', '')}")
        print(f"({len(hits)} match{'es' if len(hits) != 1 else ''} for {args.query!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
