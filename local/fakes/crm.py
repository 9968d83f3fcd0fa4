"""A HubSpot-style CRM (contacts, API v3) kept in memory, for tests and the demo.

Endpoints (the subset crm-sync uses, same paths and shapes as HubSpot's):
  POST   /crm/v3/objects/contacts/batch/upsert   inputs [{idProperty: "email", id, properties}]
  GET    /crm/v3/objects/contacts/{id}[?idProperty=email]
  DELETE /crm/v3/objects/contacts/{contactId}   archive (204, also when already archived)
  GET    /crm/v3/objects/contacts[?archived=true]   listing (results + paging omitted)
Every call needs ``Authorization: Bearer <token>`` (401 otherwise).
Faults: ``fail(429, headers={"Retry-After": "1"})``, ``fail(503)``, ``fail(200, delay_s=2)``.
"""
from __future__ import annotations

import itertools
from typing import Any

from streamkit.timefmt import now_iso

from .base import FakeServer, Request

PREFIX = "/crm/v3/objects/contacts"


def _error(status: int, category: str, message: str) -> tuple[int, dict]:
    return status, {"status": "error", "message": message, "category": category,
                    "correlationId": "00000000-0000-0000-0000-000000000000"}


class FakeCRM(FakeServer):
    name = "fake-crm"

    def __init__(self, *args: Any, token: str = "local-crm-token", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.token = token
        self.contacts: dict[str, dict] = {}  # id -> {id, properties, createdAt, updatedAt, archived}
        self._ids = itertools.count(1001)

    # --- helpers for tests and the demo --------------------------------------------------
    def by_email(self, email: str, *, archived: bool = False) -> dict | None:
        with self.lock:
            for c in self.contacts.values():
                if c["properties"].get("email") == email and c["archived"] == archived:
                    return c
        return None

    def active(self) -> list[dict]:
        with self.lock:
            return [c for c in self.contacts.values() if not c["archived"]]

    # --- the API -------------------------------------------------------------------------
    def route(self, req: Request):
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION",
                          "Authentication credentials not found. This API supports OAuth 2.0 and private app tokens.")
        if not req.path.startswith(PREFIX):
            return _error(404, "OBJECT_NOT_FOUND", f"no route for {req.method} {req.path}")
        rest = req.path[len(PREFIX):].strip("/")
        if req.method == "POST" and rest == "batch/upsert":
            return self._upsert(req)
        if req.method == "GET" and rest == "":
            archived = req.query.get("archived") == "true"
            with self.lock:
                results = [c for c in self.contacts.values() if c["archived"] == archived]
            return 200, {"results": results}
        if rest and "/" not in rest:
            if req.method == "GET":
                found = self._find(rest, req.query.get("idProperty"))
                if found:
                    return 200, found
                return _error(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.")
            if req.method == "DELETE":
                with self.lock:
                    c = self.contacts.get(rest)
                    if c is not None and not c["archived"]:
                        c.update(archived=True, archivedAt=now_iso(), updatedAt=now_iso())
                return 204, ""
        return _error(405, "METHOD_NOT_ALLOWED", f"{req.method} {req.path}")

    def _find(self, ident: str, id_property: str | None) -> dict | None:
        with self.lock:
            if id_property in (None, "", "hs_object_id"):
                c = self.contacts.get(ident)
                return c if c and not c["archived"] else None
        return self.by_email(ident) if id_property == "email" else None

    def _upsert(self, req: Request):
        try:
            inputs = req.json()["inputs"]
            assert isinstance(inputs, list) and inputs
        except Exception:
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON: expected {\"inputs\": [...]}")
        results = []
        with self.lock:
            for item in inputs:
                if not isinstance(item, dict) or item.get("idProperty") != "email" or not item.get("id"):
                    return _error(400, "VALIDATION_ERROR", "each input needs idProperty 'email' and an id")
                email = str(item["id"])
                if "@" not in email:
                    return _error(400, "VALIDATION_ERROR", f"Property values were not valid: email {email!r} is invalid")
                props = {k: ("" if v is None else str(v)) for k, v in (item.get("properties") or {}).items()}
                props["email"] = email
                existing = self.by_email(email)
                if existing is None:
                    cid = str(next(self._ids))
                    existing = self.contacts[cid] = {"id": cid, "properties": {}, "createdAt": now_iso(),
                                                     "updatedAt": now_iso(), "archived": False}
                    new = True
                else:
                    new = False
                existing["properties"].update(props)
                existing["updatedAt"] = now_iso()
                results.append({**existing, "new": new})
        return 200, {"status": "COMPLETE", "results": results, "startedAt": now_iso(), "completedAt": now_iso()}


def main() -> None:  # python -m local.fakes.crm [port]
    import sys

    fake = FakeCRM(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    fake.serve_until_interrupted(f"CRM_BASE_URL={fake.url} CRM_TOKEN={fake.token}")


if __name__ == "__main__":
    main()
