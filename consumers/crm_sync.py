"""crm-sync: mirror users as contacts in a HubSpot-style CRM (API v3), keyed by email.

* INSERT/MODIFY: ``POST /crm/v3/objects/contacts/batch/upsert`` with ``idProperty=email``:
  creates or updates in one call, so a redelivered record is harmless (idempotent by design,
  no lock table needed). Properties: email, firstname, lastname, plan, user_id.
* REMOVE: look the contact up by email (``GET /crm/v3/objects/contacts/{email}?idProperty=email``;
  404 = nothing to do) and archive it (``DELETE /crm/v3/objects/contacts/{id}``). The email
  comes from the OldImage (the stream is NEW_AND_OLD_IMAGES).
* Errors: 429 (with ``Retry-After``), 5xx, timeouts and connection errors ->
  ``TransientError``; 400/401/403 and other 4xx -> ``CrmError`` (a ``PermanentError``) naming
  the status, HubSpot's category and message.
* ``CRM_BASE_URL``; bearer token ``CRM_TOKEN`` (local) or ``CRM_TOKEN_PARAM`` (SSM SecureString).
  One ``httpx.Client`` per process (connection reuse), created on first use, with timeouts.

* Stale writes: HubSpot has no conditional write, so the ``change_order`` last applied per
  user lives in DynamoDB (``streamkit.orderguard``, ``IDEMPOTENCY_TABLE``): read before the
  CRM call (an older change or a duplicate, as Kinesis may deliver, is skipped), recorded
  with a conditional update after it succeeded. A REMOVE records its order too, so a late
  older INSERT cannot bring an archived contact back. The window between the read and the
  write remains (two writers of one user at once): docs/consumers.md explains it.

Known limit: a MODIFY that changes the email upserts a contact under the new email; the old
contact stays (HubSpot merges are a human decision).
"""
from __future__ import annotations

import threading
from typing import Any

from streamkit import PermanentError, StreamRecord, TransientError, orderguard
from streamkit.orderguard import AppliedOrders
from streamkit.settings import Setting

from .secrets import get_secret, secret_settings
from .users import USER_SCHEMA_MODE, name_parts, user_id

CONSUMER = "crm-sync"
CONTACTS = "/crm/v3/objects/contacts"
CRM_BASE_URL = Setting(
    "CRM_BASE_URL", "the CRM API's base URL, e.g. https://api.hubapi.com, or the local fake CRM", required=True
)
CRM_TIMEOUT_S = Setting(
    "CRM_TIMEOUT_S", "timeout of one CRM request, in seconds (connect: at most 2)",
    parse=float, default=5.0, low=0.1, high=60,
)
SETTINGS = (CRM_BASE_URL, *secret_settings("CRM_TOKEN", "bearer token of the CRM API"), CRM_TIMEOUT_S, USER_SCHEMA_MODE,
            *orderguard.SETTINGS)

_client: Any = None
_client_key: tuple[str, str] | None = None
_client_lock = threading.Lock()
applied_orders = AppliedOrders(CONSUMER)  # the change_order applied per user (DynamoDB)


class CrmError(PermanentError):
    """The CRM refused the request (4xx): retrying it unchanged cannot succeed."""

    def __init__(self, status: int, message: str, category: str = ""):
        hint = {401: " (check CRM_TOKEN / CRM_TOKEN_PARAM)", 403: " (the token lacks the crm.objects.contacts scopes)"}
        label = f"{status} {category}" if category else str(status)
        super().__init__(f"CRM answered {label}: {message}{hint.get(status, '')}")
        self.status, self.category = status, category


def client() -> Any:
    """The process-wide httpx client for the current CRM_BASE_URL and token.

    Locked: the reprocess worker calls handle_record from a thread pool.
    """
    base = CRM_BASE_URL.require(owner=CONSUMER)
    key = (base.rstrip("/"), get_secret("CRM_TOKEN"))
    current = _client
    if current is not None and _client_key == key:
        return current
    with _client_lock:
        return _new_client(key)


def _new_client(key: tuple[str, str]) -> Any:
    global _client, _client_key
    if _client is None or _client_key != key:
        import httpx

        if _client is not None:
            _client.close()
        timeout_s = CRM_TIMEOUT_S.read()
        _client = httpx.Client(
            base_url=key[0],
            headers={"Authorization": f"Bearer {key[1]}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=min(2.0, timeout_s)),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        )
        _client_key = key
    return _client


def warm_up() -> None:
    """Import httpx during init, not on the first record."""
    import httpx  # noqa: F401


def slowest_call_s() -> float:
    """The longest one record can wait on the CRM (the stream loop's deadline margin covers it):
    a REMOVE makes two requests, each at most the connect timeout, then the read timeout (the
    request body goes out in one write)."""
    timeout = CRM_TIMEOUT_S.read()
    return 2 * (min(2.0, timeout) + timeout)


def _request(method: str, path: str, **kwargs: Any) -> Any:
    """One CRM call; returns the response for 2xx and 404, raises streamkit errors otherwise."""
    import httpx

    try:
        response = client().request(method, path, **kwargs)
    except httpx.TimeoutException as exc:
        raise TransientError(f"CRM {method} {path} timed out: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"CRM {method} {path} unreachable: {exc!r}") from exc
    status = response.status_code
    if status < 300 or status == 404:
        return response
    try:
        data = response.json()
    except ValueError:
        data = {}
    message = data.get("message") if isinstance(data, dict) else None
    category = data.get("category", "") if isinstance(data, dict) else ""
    message = message or response.text[:300]
    if status == 429 or status >= 500:
        raw = response.headers.get("Retry-After")
        try:
            retry_after = float(raw) if raw else None
        except ValueError:
            retry_after = None
        raise TransientError(f"CRM {method} {path} answered {status}: {message}", retry_after=retry_after)
    raise CrmError(status, message, category)


def contact_properties(item: dict) -> dict:
    """HubSpot contact properties for a user item (KeyError on v2 items in legacy mode)."""
    first, last = name_parts(item)
    props = {"email": item["email"], "firstname": first, "lastname": last, "user_id": str(item["user_id"])}
    if item.get("plan") is not None:
        props["plan"] = str(item["plan"])
    return props


def upsert(item: dict) -> dict:
    """Create or update the contact with this item's email; returns HubSpot's result object."""
    email = item.get("email")
    if not email:
        raise PermanentError(f"user {item.get('user_id')} has no email: cannot be a CRM contact")
    body = {"inputs": [{"idProperty": "email", "id": str(email), "properties": contact_properties(item)}]}
    response = _request("POST", f"{CONTACTS}/batch/upsert", json=body)
    if response.status_code == 404:
        raise CrmError(404, "batch upsert endpoint not found (is CRM_BASE_URL right?)")
    data = response.json()
    errors = data.get("errors") or []  # 207 Multi-Status: the input was refused
    if errors:
        first = errors[0]
        raise CrmError(response.status_code, str(first.get("message")), str(first.get("category", "")))
    results = data.get("results") or []
    if not results:
        raise TransientError(f"CRM upsert returned no result: {response.text[:300]}")
    return results[0]


def archive(email: str) -> bool:
    """Archive the contact with ``email``; ``False`` if there was none (already gone is fine)."""
    from urllib.parse import quote

    found = _request("GET", f"{CONTACTS}/{quote(email, safe='@')}", params={"idProperty": "email", "properties": "email"})
    if found.status_code == 404:
        return False
    contact_id = found.json()["id"]
    _request("DELETE", f"{CONTACTS}/{contact_id}")
    return True


def handle_record(record: StreamRecord) -> None:
    """Upsert on INSERT/MODIFY, archive on REMOVE; never apply an older change over a newer one."""
    uid = user_id(record.keys)
    order = record.change_order
    if record.event_name == "REMOVE":
        old = record.old_image
        if old is None:
            raise PermanentError("REMOVE without OldImage: crm-sync needs NEW_AND_OLD_IMAGES to find the contact's email")
        if not applied_orders.is_newer(uid, order):
            return _skipped(record, uid)
        if old.get("email"):
            archive(str(old["email"]))
    else:
        item = record.new_image
        if item is None:
            raise PermanentError(f"{record.event_name} without NewImage: the stream view type must include new images")
        if not applied_orders.is_newer(uid, order):
            return _skipped(record, uid)
        upsert({**item, "user_id": uid})
    if not applied_orders.record(uid, order):
        from streamkit.log import get_logger

        get_logger(consumer=CONSUMER).warning(
            "a newer change of this user was applied while this one was written; the CRM may hold "
            "the older state until the user changes again (docs/consumers.md: the remaining race)",
            user_id=uid, change_order=order, sequence_number=record.sequence_number)


def _skipped(record: StreamRecord, uid: str) -> None:
    """An older change or a duplicate (Kinesis may deliver one twice): nothing to do."""
    from streamkit.log import get_logger

    get_logger(consumer=CONSUMER).info("older or duplicate change skipped", user_id=uid,
                                       change_order=record.change_order, sequence_number=record.sequence_number)
