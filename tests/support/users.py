"""Users-table items on both sides of the schema change, and their stream records.

v1 items (before the change) carry ``fullname``; v2 items ``firstname``/``lastname``, which
v1 code reads as a ``KeyError``: the failure every suite's story turns on.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import boto3

from streamkit.testing import make_record


def user_item(n: int, *, v2: bool = False, width: int = 4, first: str = "Ada", last: str = "Number",
              plan: str = "free", **extra: Any) -> dict:
    """User ``n``: ``user_id`` ``u`` + ``n`` (zero-padded to ``width``), ``user<n>@example.com``,
    named ``first`` + ``last<n>``; ``extra`` adds or replaces attributes."""
    item: dict[str, Any] = {"user_id": f"u{n:0{width}d}", "email": f"user{n}@example.com", "plan": plan}
    if v2:
        item.update(firstname=first, lastname=f"{last}{n}")
    else:
        item["fullname"] = f"{first} {last}{n}"
    item.update(extra)
    return item


def user_record(event_name: str, item: dict | None = None, *, old: dict | None = None, user_id: str | None = None,
                **kw: Any) -> dict:
    """A Lambda-format stream record of a users-table change, keyed by ``user_id`` (default:
    the id in ``item`` or ``old``); ``kw`` goes to ``streamkit.testing.make_record``
    (``sequence_number``, ``event_id``, ``created``, ...)."""
    if user_id is None:
        source = item if item is not None else old
        if source is None:
            raise ValueError("a user record needs the new item, the old item or a user_id")
        user_id = source["user_id"]
    return make_record(event_name, keys={"user_id": user_id}, new_image=item, old_image=old, **kw)


def insert(item: dict, **kw: Any) -> dict:
    return user_record("INSERT", item, **kw)


def put_users(items: Iterable[dict], table: str = "users") -> list[str]:
    """Write ``items`` one by one from this thread (moto keeps sequence numbers unique only
    for one writer); returns their ids in order."""
    t = boto3.resource("dynamodb").Table(table)
    ids = []
    for item in items:
        t.put_item(Item=item)
        ids.append(item["user_id"])
    return ids
