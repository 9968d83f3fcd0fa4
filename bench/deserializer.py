"""streamkit's deserializer vs boto3's TypeDeserializer on the same images."""
from __future__ import annotations

import time

from .items import build_event


def run() -> list[dict]:
    from boto3.dynamodb.types import TypeDeserializer

    from streamkit.deserializer import deserialize_image

    images = [r["dynamodb"]["NewImage"] for r in build_event(2_000, fail_every=0)["Records"]]
    deser = TypeDeserializer()

    def boto3_all():
        for img in images:
            {k: deser.deserialize(v) for k, v in img.items()}

    def ours_all():
        for img in images:
            deserialize_image(img)

    def best(fn, reps=7):
        out = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            out = min(out, time.perf_counter() - t0)
        return out

    theirs, ours = best(boto3_all), best(ours_all)
    return [
        {"bench": "deserializer", "contender": "TypeDeserializer", "images_per_s": len(images) / theirs},
        {"bench": "deserializer", "contender": "streamkit", "images_per_s": len(images) / ours, "speedup": theirs / ours},
    ]
