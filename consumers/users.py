"""Reading user items (the users table) the same way in every consumer.

The schema story (DESIGN.md, background article 004): v1 items carry ``fullname``; items
written after the producer's change carry ``firstname`` + ``lastname`` instead. Code that
reads ``item["fullname"]`` raises ``KeyError`` on the new items; the fix accepts both.

Which code runs is chosen by ``USER_SCHEMA_MODE``, read on every call so a demo can
"deploy the fix" without restarting the process:

* ``compat`` (default; what every real deployment runs): accept v1 and v2 items.
* ``legacy``: the v1 consumer code, ``item["fullname"]`` only (demo and tests set this
  to reproduce the incident).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamkit.settings import Setting, lower

SCHEMA_MODE_ENV = "USER_SCHEMA_MODE"
SCHEMA_MODES = ("compat", "legacy")
USER_SCHEMA_MODE = Setting(
    SCHEMA_MODE_ENV,
    "compat: accept v1 (fullname) and v2 (firstname+lastname) user items; legacy: the v1 code "
    "(KeyError on v2). Read on every record, so a demo flips it without a restart",
    parse=lower, default="compat", choices=SCHEMA_MODES,
)
SETTINGS = (USER_SCHEMA_MODE,)


def schema_mode(env: Mapping[str, str] | None = None) -> str:
    """The current mode; an unknown value is a configuration error, not a silent default."""
    return USER_SCHEMA_MODE.read(env)


def name_parts(item: Mapping[str, Any]) -> tuple[str, str]:
    """``(first, last)`` of a user item; raises ``KeyError`` like v1 code did in legacy mode."""
    if schema_mode() == "legacy":
        full = item["fullname"]  # v1 code: the KeyError of the story on v2 items
        first, _, last = str(full).partition(" ")
        return first, last
    if item.get("firstname") is not None or item.get("lastname") is not None:
        return str(item.get("firstname") or ""), str(item.get("lastname") or "")
    full = item.get("fullname")
    if full is None:
        return "", ""
    first, _, last = str(full).strip().partition(" ")
    return first, last.strip()


def display_name(item: Mapping[str, Any]) -> str:
    """``"Ada Lovelace"`` from either schema (see module docstring for the legacy mode)."""
    if schema_mode() == "legacy":
        return str(item["fullname"])
    if item.get("fullname") and item.get("firstname") is None and item.get("lastname") is None:
        return str(item["fullname"]).strip()
    return " ".join(p for p in name_parts(item) if p)


def user_id(keys: Mapping[str, Any]) -> str:
    """The users table partition key, as text."""
    try:
        return str(keys["user_id"])
    except KeyError:
        from streamkit import PermanentError

        raise PermanentError(f"record keys {sorted(keys)} have no 'user_id' (is this the users table stream?)") from None


def plain(value: Any) -> Any:
    """Deserialized DynamoDB values -> JSON-friendly ones (Decimal -> int/float, sets -> lists)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, Mapping)):  # a record's LazyImage too
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
