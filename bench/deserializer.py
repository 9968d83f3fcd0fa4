"""streamkit's deserializer vs boto3's TypeDeserializer on the same images (whole images:
what a handler pays when it reads every attribute; ``LazyImage`` decodes only what is read).
Timed in CPU time of this process (``timing.CPU``): both are pure Python CPU work."""
from __future__ import annotations

import json
import os
import random

from .items import build_records
from .timing import CPU, interleaved_min

ROUNDS = 3 if os.environ.get("BENCH_QUICK") else 25


def _decimal_heavy(n: int) -> list[dict]:
    from streamkit.ddbjson import serialize_image

    rng = random.Random(3)
    return [serialize_image({f"price_{i}": round(rng.uniform(0, 1000), 2) for i in range(30)}) for _ in range(n)]


def image_sets() -> dict[str, list[dict]]:
    sets = {
        "200 B": [r["dynamodb"]["NewImage"] for r in build_records(1_000, "200 B")],
        "2.5 KB (text)": [r["dynamodb"]["NewImage"] for r in build_records(300, "2.5 KB")],
        "20 KB (nested: maps, lists, sets, decimals)": [r["dynamodb"]["NewImage"] for r in build_records(20, "20 KB")],
        "decimal-heavy (30 decimals)": _decimal_heavy(300),
    }
    return {name: json.loads(json.dumps(images)) for name, images in sets.items()}  # as Lambda parses them


def run() -> list[dict]:
    from boto3.dynamodb.types import TypeDeserializer

    from streamkit.ddbjson import deserialize_image

    deser = TypeDeserializer()
    rows = []
    for name, images in image_sets().items():
        def boto3_all(images=images):
            for img in images:
                {k: deser.deserialize(v) for k, v in img.items()}

        def ours_all(images=images):
            for img in images:
                deserialize_image(img)

        t = interleaved_min({"TypeDeserializer": boto3_all, "streamkit": ours_all}, ROUNDS, clock=CPU)
        rows.append({"bench": "deserializer", "images": name, "n": len(images),
                     "boto3_us": t["TypeDeserializer"] / len(images) * 1e6,
                     "ours_us": t["streamkit"] / len(images) * 1e6,
                     "speedup": t["TypeDeserializer"] / t["streamkit"]})
    return per_type(deser, deserialize_image) + rows


# One attribute type at a time (20 attributes of one type per image), to show where the speedup comes from.
TYPE_CASES = {
    "S": "some text", "N (integer)": 12345, "N (negative integer)": -12345, "N (decimal)": 1.25,
    "BOOL": True, "NULL": None, "M of 4 S": {"a": "x", "b": "y", "c": "z", "d": "w"}, "L of 3 S": ["a", "b", "c"],
    "L of 3 N": [10, 20, 50], "M of 3 decimals": {"a": 1.25, "b": 99.5, "c": 3.75}, "SS": {"a", "b"},
}


def per_type(deser, deserialize_image) -> list[dict]:
    from streamkit.ddbjson import serialize_image

    rows = []
    for name, value in TYPE_CASES.items():
        image = serialize_image({f"k{i}": value for i in range(20)})

        def boto3_n(image=image):
            for _ in range(100):
                {k: deser.deserialize(v) for k, v in image.items()}

        def ours_n(image=image):
            for _ in range(100):
                deserialize_image(image)

        t = interleaved_min({"TypeDeserializer": boto3_n, "streamkit": ours_n}, 9, clock=CPU)
        rows.append({"bench": "deserializer per type", "contender": name,
                     "boto3_ns": t["TypeDeserializer"] / 2000 * 1e9, "ours_ns": t["streamkit"] / 2000 * 1e9,
                     "speedup": t["TypeDeserializer"] / t["streamkit"]})
    return rows
