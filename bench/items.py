"""User items in three shapes, and Lambda-format stream events built from them.

Shapes (size = the NewImage's DynamoDB JSON, what Lambda delivers):

* ``200 B``: a few flat attributes;
* ``2.5 KB``: text-heavy (a ~2 KB bio), a small address map, tags, a string set;
* ``20 KB``: nested: lists of order maps with decimals, maps of decimal stats, number
  and string sets, the same three fields on top.

Every shape has ``fullname``, ``email`` and ``plan`` on top: what the 3-field handler reads.
Events are returned as JSON text so each call can parse a fresh object tree, as the Lambda
runtime hands one to the handler.
"""
from __future__ import annotations

import json
import random

from streamkit.testing import make_event, make_record

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners-Lee"]
SHAPES = ("200 B", "2.5 KB", "20 KB")
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # synchronous invocation payload, what a stream batch must fit


def _money(rng: random.Random) -> float:
    return round(rng.uniform(1, 999), 2) or 1.25


def user_item(i: int, rng: random.Random, shape: str = "2.5 KB") -> dict:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    item = {
        "user_id": f"user-{i:08d}",
        "email": f"{first.lower()}.{last.lower()}{i}@example.com",
        "fullname": f"{first} {last}",
        "plan": rng.choice(["free", "pro", "team"]),
    }
    if shape == "200 B":
        item.update(logins=rng.randint(0, 5000), verified=rng.random() > 0.3, created_at="2026-11-22T10:00:00Z")
        return item
    item.update(
        created_at="2026-11-22T10:00:00Z",
        logins=rng.randint(0, 5000),
        score=rng.choice([0.5, 1.25, 99.75]),
        verified=rng.random() > 0.3,
        referrer=None,
        address={"street": f"{rng.randint(1, 999)} Main Street", "city": "Springfield",
                 "zip": f"{rng.randint(10000, 99999)}", "country": "US"},
        tags=["beta", "newsletter", "mobile"][: rng.randint(1, 3)],
        roles={"reader", "writer"},
    )
    if shape == "2.5 KB":
        item["bio"] = " ".join(rng.choice(_LAST).lower() for _ in range(260))
        return item
    if shape != "20 KB":
        raise ValueError(f"unknown shape {shape!r}: use one of {SHAPES}")
    item["orders"] = [
        {
            "order_id": f"o-{i}-{n}",
            "total": _money(rng),
            "tax": round(rng.uniform(0, 50), 2),
            "placed_at": 1_700_000_000 + rng.randint(0, 10**7),
            "lines": [{"sku": f"sku-{rng.randint(1000, 9999)}", "qty": rng.randint(1, 5), "price": _money(rng)}
                      for _ in range(4)],
            "flags": {"gift", "express"} if n % 2 else {"standard"},
        }
        for n in range(36)
    ]
    item["stats"] = {f"m{k}": {"avg": round(rng.uniform(0, 100), 3), "p99": round(rng.uniform(100, 900), 2),
                               "count": rng.randint(0, 10**6)} for k in range(24)}
    item["scores"] = {round(rng.uniform(0, 10), 2) for _ in range(20)}
    item["prefs"] = {"theme": "dark", "lang": "en", "tz": "Europe/Paris", "digest": True, "limits": [10, 20, 50]}
    return item


def build_records(n: int, shape: str = "2.5 KB", fail_every: int = 0, seed: int = 7,
                  source: str = "dynamodb") -> list[dict]:
    """``n`` INSERT records of ``shape``; every ``fail_every``-th (1 = all) lacks ``fullname``
    (the 3-field handler fails with a KeyError on it). ``source="kinesis"``: Lambda's Kinesis
    records around the same changes."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        item = user_item(i, rng, shape)
        if fail_every and i % fail_every == fail_every // 2:
            del item["fullname"]
            item["firstname"], item["lastname"] = "New", "Schema"
        records.append(make_record("INSERT", keys={"user_id": item["user_id"]}, new_image=item, source=source))
    return records


def event_text(n: int, shape: str = "2.5 KB", fail_every: int = 0, seed: int = 7) -> str:
    """The invocation payload as Lambda sends it; ``json.loads`` it once per call."""
    return json.dumps(make_event(build_records(n, shape, fail_every, seed)))


def kinesis_event_text(n: int, shape: str = "2.5 KB", fail_every: int = 0, seed: int = 7) -> str:
    """The same changes as a Kinesis Data Streams for DynamoDB event."""
    return json.dumps(make_event(build_records(n, shape, fail_every, seed, source="kinesis")))


def build_event(n: int, fail_every: int = 100, seed: int = 7, shape: str = "2.5 KB") -> dict:
    """One parsed event (for benchmarks that do not invoke a handler repeatedly)."""
    return json.loads(event_text(n, shape, fail_every, seed))


def image_size(event: dict) -> int:
    """Mean NewImage size in bytes (its DynamoDB JSON)."""
    recs = event["Records"]
    return sum(len(json.dumps(r["dynamodb"]["NewImage"])) for r in recs) // max(1, len(recs))


def to_document(user_id: str, image) -> dict:
    """The same 'real work' in every contender: read three fields, build a search document."""
    return {"id": user_id, "name": image["fullname"], "email": image["email"], "plan": image["plan"]}


def whole_document(user_id: str, image) -> dict:
    """A handler that uses the whole item (every attribute decoded)."""
    return {"id": user_id, **image}
