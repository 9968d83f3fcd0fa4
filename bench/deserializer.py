"""streamkit's deserializer vs boto3's TypeDeserializer on the same images."""
from __future__ import annotations

from .items import build_event
from .timing import interleaved_min

ROUNDS = 41


def run() -> list[dict]:
    from boto3.dynamodb.types import TypeDeserializer

    from streamkit.ddbjson import deserialize_image

    images = [r["dynamodb"]["NewImage"] for r in build_event(2_000, fail_every=0)["Records"]]
    deser = TypeDeserializer()

    def boto3_all():
        for img in images:
            {k: deser.deserialize(v) for k, v in img.items()}

    def ours_all():
        for img in images:
            deserialize_image(img)

    t = interleaved_min({"TypeDeserializer": boto3_all, "streamkit": ours_all}, ROUNDS)
    theirs, ours = t["TypeDeserializer"], t["streamkit"]
    return per_type(deser, deserialize_image) + [
        {"bench": "deserializer", "contender": "TypeDeserializer", "images_per_s": len(images) / theirs},
        {"bench": "deserializer", "contender": "streamkit", "images_per_s": len(images) / ours, "speedup": theirs / ours},
    ]


# One attribute type at a time (20 attributes per image), to show where the speedup comes from.
TYPE_CASES = {
    "S": "some text", "N (integer)": 12345, "N (decimal)": 1.25, "BOOL": True, "NULL": None,
    "M of 4 S": {"a": "x", "b": "y", "c": "z", "d": "w"}, "L of 3 S": ["a", "b", "c"],
    "L of 3 N": [10, 20, 50], "SS": {"a", "b"},
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

        t = interleaved_min({"TypeDeserializer": boto3_n, "streamkit": ours_n}, 7)
        rows.append({"bench": "deserializer per type", "contender": name,
                     "boto3_ns": t["TypeDeserializer"] / 2000 * 1e9, "ours_ns": t["streamkit"] / 2000 * 1e9,
                     "speedup": t["TypeDeserializer"] / t["streamkit"]})
    return rows
