"""LazyImage: a record's NewImage/OldImage decodes an attribute on first read, caches it, and
otherwise behaves like the plain dict it stands for."""
from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Mapping
from decimal import Decimal

import pytest

from consumers.users import plain
from streamkit.ddbjson import deserialize_image, serialize_image
from streamkit.errors import MalformedRecordError
from streamkit.image import LazyImage
from streamkit.pii import mask
from streamkit.record import StreamRecord
from streamkit.testing import make_record

ITEM = {
    "user_id": "u1",
    "email": "ada@example.com",
    "fullname": "Ada Lovelace",
    "logins": 42,
    "score": Decimal("1.25"),
    "verified": True,
    "referrer": None,
    "address": {"city": "London", "zip": "N1"},
    "tags": ["a", "b"],
    "roles": {"reader", "writer"},
    "limits": [10, Decimal("2.5")],
}


def _broken(name: str) -> dict:
    """``ITEM``'s image with attribute ``name`` malformed (decoding it raises)."""
    image = serialize_image(ITEM)
    image[name] = {"N": "twelve"}
    return image


def test_reads_like_the_dict_it_stands_for():
    image = LazyImage(serialize_image(ITEM))
    assert isinstance(image, Mapping)
    assert image == ITEM and ITEM == image and not (image != ITEM)
    assert dict(image) == ITEM and {**image} == ITEM and image.to_dict() == ITEM and image.copy() == ITEM
    assert list(image) == list(ITEM) and list(image.keys()) == list(ITEM)
    assert list(image.items()) == list(ITEM.items()) and list(image.values()) == list(ITEM.values())
    assert list(reversed(image)) == list(reversed(ITEM))
    assert len(image) == len(ITEM) and "email" in image and "nope" not in image
    assert image.get("nope") is None and image.get("nope", 7) == 7 and image.get("logins") == 42
    with pytest.raises(KeyError):
        image["nope"]
    assert (image | {"x": 1}) == {**ITEM, "x": 1} and ({"x": 1} | image) == {"x": 1, **ITEM}
    assert repr(image) == repr(image.to_dict()) and repr(image).startswith("{'user_id': 'u1'")
    assert image != {**ITEM, "logins": 43} and image != {"user_id": "u1"} and image != [1]
    assert LazyImage(serialize_image(ITEM)) == image
    with pytest.raises(TypeError):
        hash(image)


def test_copies_pickles_and_plain_values_are_plain_dicts():
    image = LazyImage(serialize_image(ITEM))
    for other in (pickle.loads(pickle.dumps(image)), copy.deepcopy(image), copy.copy(image)):
        assert type(other) is dict and other == ITEM
    assert plain(image) == plain(ITEM) and type(plain(image)) is dict
    # json.dumps refuses it loudly (rather than writing something else); dict(image) works.
    with pytest.raises(TypeError):
        json.dumps(image)
    assert json.loads(json.dumps(plain(dict(image)))) == plain(ITEM)


def test_pii_masking_sees_inside_it():
    image = LazyImage(serialize_image(ITEM))
    masked = mask({"image": image})
    assert masked["image"]["email"] == "a***@example.com" and masked["image"]["fullname"] == "A***"


def test_only_what_is_read_is_decoded():
    # The malformed attribute is never read: nothing fails.
    record = make_record("INSERT", keys={"user_id": "u1"}, sequence_number="123")
    image = LazyImage(_broken("logins"), "dynamodb.NewImage", record)
    assert image["fullname"] == "Ada Lovelace" and image["address"] == {"city": "London", "zip": "N1"}
    assert image.get("score") == Decimal("1.25") and "logins" in image and len(image) == len(ITEM)
    # Reading it names the attribute and the record.
    with pytest.raises(MalformedRecordError, match=r"dynamodb\.NewImage\.logins: not a DynamoDB number") as err:
        image["logins"]
    assert err.value.sequence_number == "123"
    # Everything-at-once reads say which attribute too (and still fail on it).
    for whole in (dict, lambda i: i.to_dict(), lambda i: list(i.items()), lambda i: i == ITEM):
        with pytest.raises(MalformedRecordError, match=r"dynamodb\.NewImage\.logins"):
            whole(LazyImage(_broken("logins"), "dynamodb.NewImage", record))


def test_an_attribute_is_decoded_once_and_the_same_object_is_handed_out():
    image = LazyImage(serialize_image(ITEM))
    address = image["address"]
    assert image["address"] is address and image.get("address") is address
    assert dict(image)["address"] is address  # decoding the rest keeps what was handed out
    assert image["address"] is address and image["tags"] is image["tags"]


def test_agrees_with_the_whole_image_deserializer():
    raw = make_record("MODIFY", keys={"user_id": "u1"}, new_image=ITEM, old_image={**ITEM, "logins": 41})
    record = StreamRecord(raw)
    assert record.new_image == deserialize_image(raw["dynamodb"]["NewImage"])
    assert record.old_image == deserialize_image(raw["dynamodb"]["OldImage"])
    assert record.old_image["logins"] == 41 and record.keys == {"user_id": "u1"}
    assert type(record.keys) is dict  # keys are tiny: a plain dict, decoded at once
