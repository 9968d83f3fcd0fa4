"""The search sink on OpenSearch (self-managed, Amazon OpenSearch Service or Serverless).

Out-of-order guard: optimistic concurrency. Read the document (``_seq_no``,
``_primary_term`` and our stored ``change_order``); if the stored order is not older, skip;
else write with ``if_seq_no``/``if_primary_term`` (or ``_create`` when absent). A concurrent
writer makes that write fail with 409, and we start over; the check therefore always
compares against what the write replaces. (External versioning cannot be used: change
orders overflow OpenSearch's 64-bit versions.) A document from before ``change_order``
(only ``seq``/``seq_key``) counts as older than any change.

Auth: SigV4 (``Urllib3AWSV4SignerAuth``, credentials from the Lambda role) when the host
ends with ``.es.amazonaws.com`` (service ``es``) or ``.aoss.amazonaws.com`` (``aoss``);
otherwise the URL's own ``user:password@``, if any.
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from opensearchpy import OpenSearch
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConflictError,
    ConnectionTimeout,
    NotFoundError,
    RequestError,
    TransportError,
)
from opensearchpy.exceptions import (
    ConnectionError as OSConnectionError,
)

from streamkit import PermanentError, TransientError
from streamkit.ordering import is_newer

from . import SEARCH_TIMEOUT_S, check_order

MAPPINGS = {
    "properties": {
        "user_id": {"type": "keyword"},
        "name": {"type": "text"},
        "email": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
        "plan": {"type": "keyword"},
        "change_order": {"type": "keyword"},
        "sequence_number": {"type": "keyword"},
        "deleted": {"type": "boolean"},
    }
}
MAX_CONFLICT_ROUNDS = 5


def aws_service(host: str) -> str | None:
    """``es`` / ``aoss`` for Amazon-hosted endpoints, else ``None``."""
    if host.endswith(".aoss.amazonaws.com"):
        return "aoss"
    if host.endswith(".es.amazonaws.com"):
        return "es"
    return None


def region_from_host(host: str) -> str:
    """``search-x-abc.eu-west-1.es.amazonaws.com`` -> ``eu-west-1`` (else AWS_REGION)."""
    parts = host.split(".")
    if len(parts) >= 4 and parts[-3] in ("es", "aoss"):
        return parts[-4]
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def build_client(url: str) -> OpenSearch:
    """An OpenSearch client for ``url`` with SigV4 on AWS hosts, timeouts and no client-side retry
    (the streamkit loop retries transient errors within the Lambda deadline)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    kwargs: dict[str, Any] = {
        "hosts": [{"host": host, "port": port, "scheme": parts.scheme}],
        "use_ssl": parts.scheme == "https",
        "verify_certs": parts.scheme == "https",
        "timeout": SEARCH_TIMEOUT_S.read(),
        "max_retries": 0,
        "retry_on_timeout": False,
        "http_compress": True,
    }
    service = aws_service(host)
    if service:
        import boto3
        from opensearchpy import Urllib3AWSV4SignerAuth

        kwargs["http_auth"] = Urllib3AWSV4SignerAuth(boto3.Session().get_credentials(), region_from_host(host), service)
    elif parts.username:
        kwargs["http_auth"] = (parts.username, parts.password or "")
    return OpenSearch(**kwargs)


def _translate(exc: Exception, what: str) -> Exception:
    """opensearch-py errors -> the streamkit vocabulary (429/5xx/timeouts transient, 4xx permanent)."""
    if isinstance(exc, (ConnectionTimeout, OSConnectionError)):
        return TransientError(f"{what}: OpenSearch unreachable or timed out: {exc}")
    if isinstance(exc, (AuthenticationException, AuthorizationException)):
        return PermanentError(f"{what}: OpenSearch refused our credentials ({exc.status_code}); "
                              "check the role/domain access policy")
    if isinstance(exc, TransportError):
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        if status == 429 or status >= 500:
            return TransientError(f"{what}: OpenSearch answered {status}: {exc.error}")
        return PermanentError(f"{what}: OpenSearch answered {status}: {exc.error} {exc.info!r:.300}")
    return exc


class OpenSearchSink:
    def __init__(self, client: OpenSearch, index: str):
        self.client, self.index = client, index
        self._index_ready = False

    @classmethod
    def from_url(cls, url: str, index: str) -> OpenSearchSink:
        return cls(build_client(url), index)

    def ensure_index(self) -> None:
        """Create the index with our mapping once per process (already existing is fine)."""
        if self._index_ready:
            return
        try:
            if not self.client.indices.exists(index=self.index):
                self.client.indices.create(index=self.index, body={"mappings": MAPPINGS})
        except RequestError as exc:
            if "resource_already_exists_exception" not in str(exc.error):
                raise _translate(exc, f"create index {self.index}") from exc
        except TransportError as exc:
            raise _translate(exc, f"create index {self.index}") from exc
        self._index_ready = True

    def _read(self, doc_id: str) -> dict | None:
        try:
            return self.client.get(index=self.index, id=doc_id)
        except NotFoundError:
            return None

    def _write(self, doc_id: str, doc: dict, order: str, sequence_number: str | None, deleted: bool) -> str:
        order = check_order(order)
        body = {**doc, "change_order": order, "sequence_number": sequence_number, "deleted": deleted}
        self.ensure_index()
        try:
            for _ in range(MAX_CONFLICT_ROUNDS):
                current = self._read(doc_id)
                if current is not None and not is_newer(order, (current.get("_source") or {}).get("change_order")):
                    return "stale"
                try:
                    if current is None:
                        self.client.create(index=self.index, id=doc_id, body=body)
                    else:
                        self.client.index(
                            index=self.index, id=doc_id, body=body,
                            params={"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]},
                        )
                    return "written"
                except ConflictError:
                    continue  # someone wrote in between: compare again with what is there now
        except TransportError as exc:
            raise _translate(exc, f"index user {doc_id}") from exc
        raise TransientError(f"user {doc_id}: {MAX_CONFLICT_ROUNDS} concurrent-write conflicts in a row")

    def put(self, doc_id: str, doc: dict, order: str, sequence_number: str | None = None) -> str:
        return self._write(doc_id, doc, order, sequence_number, False)

    def remove(self, doc_id: str, order: str, sequence_number: str | None = None) -> str:
        return self._write(doc_id, {"user_id": doc_id}, order, sequence_number, True)

    def get(self, doc_id: str) -> dict | None:
        try:
            current = self._read(doc_id)
        except TransportError as exc:
            raise _translate(exc, f"get user {doc_id}") from exc
        if current is None:
            return None
        return dict(current.get("_source") or {})

    def search(self, query: str, limit: int = 10) -> list[dict]:
        body = {
            "size": int(limit),
            "query": {
                "bool": {
                    "must": [{"multi_match": {"query": query, "type": "bool_prefix",
                                              "fields": ["name", "email", "plan"]}}],
                    "filter": [{"term": {"deleted": False}}],
                }
            },
        }
        try:
            hits = self.client.search(index=self.index, body=body)["hits"]["hits"]
        except NotFoundError:
            return []
        except TransportError as exc:
            raise _translate(exc, "search") from exc
        return [dict(h["_source"]) for h in hits]
