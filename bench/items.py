"""Realistic ~1 KB user items and Lambda-format stream events for the benchmarks."""
from __future__ import annotations

import json
import random

from streamkit.testing import make_event, make_record

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners-Lee"]


def user_item(i: int, rng: random.Random) -> dict:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "user_id": f"user-{i:08d}",
        "email": f"{first.lower()}.{last.lower()}{i}@example.com",
        "fullname": f"{first} {last}",
        "plan": rng.choice(["free", "pro", "team"]),
        "created_at": "2026-11-22T10:00:00Z",
        "logins": rng.randint(0, 5000),
        "score": rng.choice([0.5, 1.25, 99.75]),
        "verified": rng.random() > 0.3,
        "referrer": None,
        "address": {"street": f"{rng.randint(1, 999)} Main Street", "city": "Springfield",
                    "zip": f"{rng.randint(10000, 99999)}", "country": "US"},
        "tags": ["beta", "newsletter", "mobile"][: rng.randint(1, 3)],
        "roles": {"reader", "writer"},
        "prefs": {"theme": "dark", "lang": "en", "tz": "Europe/Paris", "digest": True, "limits": [10, 20, 50]},
        "bio": " ".join(rng.choice(_LAST).lower() for _ in range(60)),
    }


def build_event(n: int, fail_every: int = 100, seed: int = 7, source: str = "dynamodb") -> dict:
    """``n`` INSERT records from ``source`` (DynamoDB Streams, or Kinesis Data Streams for
    DynamoDB: the same changes in base64 ``kinesis.data``); every ``fail_every``-th lacks
    ``fullname`` (fails the handler)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        item = user_item(i, rng)
        if fail_every and i % fail_every == fail_every // 2:
            del item["fullname"]
            item["firstname"], item["lastname"] = "New", "Schema"
        records.append(make_record("INSERT", keys={"user_id": item["user_id"]}, new_image=item, source=source))
    # What the handler gets in Lambda: the runtime json-decodes the invocation payload, so the
    # event is one freshly parsed object tree (also its memory layout, which the timings feel).
    return json.loads(json.dumps(make_event(records)))


def item_size(event: dict) -> int:
    return sum(len(json.dumps(r["dynamodb"]["NewImage"])) for r in event["Records"]) // max(1, len(event["Records"]))


def to_document(user_id: str, image: dict) -> dict:
    """The same 'real work' in every contender: build a search document."""
    return {
        "id": user_id,
        "name": image["fullname"],
        "email": image["email"],
        "plan": image["plan"],
        "city": image["address"]["city"],
        "tags": list(image["tags"]),
    }
