"""A sliver of the OpenSearch REST API, in memory: enough for the search sink's tests.

Documents carry ``_seq_no``/``_primary_term`` and honour ``if_seq_no``/``if_primary_term``
and ``_create`` with 409 ``version_conflict_engine_exception`` exactly as OpenSearch does;
search understands a ``bool`` of ``multi_match`` (prefix per term) and ``term`` filters.
Faults as in ``FakeServer.fail`` (e.g. ``fail(429, path_contains="/_doc/")``).
"""
from __future__ import annotations

import itertools
import re
from typing import Any

from .base import FakeServer, Request


def _conflict(index: str, doc_id: str, why: str) -> tuple[int, dict]:
    reason = f"[{doc_id}]: version conflict, {why}"
    err = {"type": "version_conflict_engine_exception", "reason": reason, "index": index}
    return 409, {"error": {"root_cause": [err], **err}, "status": 409}


class FakeOpenSearch(FakeServer):
    name = "fake-opensearch"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.indices: dict[str, dict[str, dict]] = {}  # index -> id -> {_source, _seq_no, _version}
        self._seq = itertools.count(0)
        self.primary_term = 1

    def route(self, req: Request):
        parts = [p for p in req.path.split("/") if p]
        if not parts:
            return 200, {"name": "fake", "cluster_name": "fake", "version": {"distribution": "opensearch", "number": "2.19.0"}}
        index = parts[0]
        if len(parts) == 1:
            if req.method == "HEAD":
                return (200 if index in self.indices else 404), ""
            if req.method == "PUT":
                if index in self.indices:
                    err = {"type": "resource_already_exists_exception", "reason": f"index [{index}] already exists"}
                    return 400, {"error": {"root_cause": [err], **err}, "status": 400}
                self.indices[index] = {}
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
        if len(parts) == 2 and parts[1] == "_search" and req.method in ("GET", "POST"):
            return self._search(index, req.json() or {})
        if len(parts) == 3 and parts[1] in ("_doc", "_create"):
            return self._doc(req, index, parts[1], parts[2])
        return 400, {"error": {"type": "illegal_argument_exception", "reason": f"fake: {req.method} {req.path}"}, "status": 400}

    def _meta(self, index: str, doc_id: str, d: dict) -> dict:
        return {"_index": index, "_id": doc_id, "_version": d["_version"], "_seq_no": d["_seq_no"],
                "_primary_term": self.primary_term}

    def _doc(self, req: Request, index: str, kind: str, doc_id: str):
        with self.lock:
            docs = self.indices.setdefault(index, {}) if req.method in ("PUT", "POST") else self.indices.get(index)
            if docs is None:
                err = {"type": "index_not_found_exception", "reason": "no such index", "index": index}
                return 404, {"error": {"root_cause": [err], **err}, "status": 404}
            current = docs.get(doc_id)
            if req.method == "GET":
                if current is None:
                    return 404, {"_index": index, "_id": doc_id, "found": False}
                return 200, {**self._meta(index, doc_id, current), "found": True, "_source": current["_source"]}
            if req.method == "DELETE":
                if current is None:
                    return 404, {"_index": index, "_id": doc_id, "result": "not_found"}
                del docs[doc_id]
                return 200, {**self._meta(index, doc_id, current), "result": "deleted"}
            if req.method in ("PUT", "POST"):
                if kind == "_create" or req.query.get("op_type") == "create":
                    if current is not None:
                        return _conflict(index, doc_id, f"document already exists (current version [{current['_version']}])")
                if "if_seq_no" in req.query:
                    if current is None or (int(req.query["if_seq_no"]), int(req.query.get("if_primary_term", -1))) != (
                        current["_seq_no"], self.primary_term
                    ):
                        return _conflict(index, doc_id, (
                            f"required seqNo [{req.query['if_seq_no']}], "
                            f"primary term [{req.query.get('if_primary_term')}]"))
                new = {"_source": req.json(), "_seq_no": next(self._seq),
                       "_version": (current["_version"] + 1) if current else 1}
                docs[doc_id] = new
                return (201 if current is None else 200), {**self._meta(index, doc_id, new),
                                                          "result": "created" if current is None else "updated"}
        return 405, {"error": "method not allowed", "status": 405}

    def _search(self, index: str, body: dict):
        with self.lock:
            docs = list((self.indices.get(index) or {}).items())
        query = body.get("query") or {"match_all": {}}
        hits = [
            {"_index": index, "_id": i, "_score": 1.0, "_source": d["_source"]}
            for i, d in docs
            if _matches(query, d["_source"])
        ][: int(body.get("size", 10))]
        return 200, {"took": 1, "timed_out": False, "hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits}}


def _matches(query: dict, source: dict) -> bool:
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "term":
        ((field, value),) = spec.items()
        value = value.get("value") if isinstance(value, dict) else value
        return source.get(field) == value
    if kind == "multi_match":
        fields = [f.split("^")[0] for f in spec.get("fields", list(source))]
        words = re.findall(r"\w+", " ".join(str(source.get(f, "")) for f in fields).lower())
        return all(any(w.startswith(t) for w in words) for t in re.findall(r"\w+", spec["query"].lower()))
    if kind == "bool":
        clauses = [*(spec.get("must") or []), *(spec.get("filter") or [])]
        clauses = clauses if isinstance(clauses, list) else [clauses]
        return all(_matches(c, source) for c in clauses)
    raise ValueError(f"fake OpenSearch does not understand query {kind!r}")
