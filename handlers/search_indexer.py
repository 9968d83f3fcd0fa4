"""Lambda entry point of search-indexer (default policy dlq-capture: FAILURE_QUEUE_URL)."""
from consumers.search_indexer import handle_record, prepare
from streamkit import stream_handler

prepare()  # import opensearch-py during init when SEARCH_URL is http(s); nothing for SQLite
handler = stream_handler("search-indexer", handle_record)
