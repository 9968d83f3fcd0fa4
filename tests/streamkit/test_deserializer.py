"""Our deserializer agrees with boto3's TypeDeserializer (property-based), ints aside."""
from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkit.deserializer import DeserializationError, deserialize_image, deserialize_value
from streamkit.record import StreamRecord
from streamkit.testing import make_record, to_attribute_value

# Numbers DynamoDB accepts: up to 38 significant digits, exponent within range.
numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20),
    st.builds(lambda m, e: Decimal(m).scaleb(e), st.integers(-(10**10), 10**10), st.integers(-60, 60)),
)
scalars = st.one_of(
    st.text(max_size=30),
    numbers,
    st.binary(min_size=1, max_size=30),
    st.booleans(),
    st.none(),
    st.frozensets(st.text(min_size=1, max_size=10), min_size=1, max_size=5).map(set),
    st.frozensets(st.integers(-1000, 1000), min_size=1, max_size=5).map(set),
    st.frozensets(st.binary(min_size=1, max_size=8), min_size=1, max_size=4).map(set),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


def boto3_equivalent(boto_value):
    """TypeDeserializer's result with Binary unwrapped (we return bytes)."""
    if isinstance(boto_value, Binary):
        return boto_value.value
    if isinstance(boto_value, dict):
        return {k: boto3_equivalent(v) for k, v in boto_value.items()}
    if isinstance(boto_value, list):
        return [boto3_equivalent(v) for v in boto_value]
    if isinstance(boto_value, set):
        return {boto3_equivalent(v) for v in boto_value}
    return boto_value


def assert_same(ours, theirs):
    if isinstance(theirs, Decimal):
        assert ours == theirs
        if theirs == theirs.to_integral_value():
            assert type(ours) is int
        else:
            assert type(ours) is Decimal
    elif isinstance(theirs, dict):
        assert type(ours) is dict and ours.keys() == theirs.keys()
        for k in theirs:
            assert_same(ours[k], theirs[k])
    elif isinstance(theirs, list):
        assert type(ours) is list and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same(a, b)
    else:
        assert ours == theirs and type(ours) is type(theirs)


@settings(max_examples=300, deadline=None)
@given(values)
def test_matches_type_deserializer(value):
    boto_av = TypeSerializer().serialize(value)  # binary as bytes, as boto3 clients return it
    lambda_av = to_attribute_value(value)  # binary as base64 text, as Lambda delivers it
    theirs = boto3_equivalent(TypeDeserializer().deserialize(boto_av))
    assert_same(deserialize_value(lambda_av), theirs)
    assert_same(deserialize_value(boto_av), theirs)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=8))
def test_whole_images_match(item):
    image = {k: to_attribute_value(v) for k, v in item.items()}
    theirs = {k: boto3_equivalent(TypeDeserializer().deserialize(TypeSerializer().serialize(v))) for k, v in item.items()}
    assert_same(deserialize_image(image), theirs)


@pytest.mark.parametrize(
    "av",
    [{"X": "1"}, {"N": "abc"}, {"N": "1e999"}, {"B": "***not base64***"}, {}, {"S": "a", "N": "1"}, "S", None],
)
def test_invalid_values_raise_a_clear_error(av):
    with pytest.raises(DeserializationError):
        deserialize_value(av)


def test_binary_from_lambda_is_bytes():
    assert deserialize_value({"B": base64.b64encode(b"\x00\xff").decode()}) == b"\x00\xff"


def test_record_images_are_lazy_and_read_once(monkeypatch):
    raw = make_record("MODIFY", keys={"user_id": "u1"}, new_image={"user_id": "u1", "n": 1}, old_image={"user_id": "u1"})
    calls = []
    import streamkit.record as rec_mod

    real = rec_mod.deserialize_image
    monkeypatch.setattr(rec_mod, "deserialize_image", lambda img: calls.append(1) or real(img))
    r = StreamRecord(raw)
    assert calls == []  # nothing deserialized at construction
    first = r.new_image
    assert r.new_image is first and calls == [1]  # once, then cached
    assert r.keys == {"user_id": "u1"} and len(calls) == 2
    assert r.raw is raw and "NewImage" in raw["dynamodb"]  # raw untouched
    assert r.event_name == "MODIFY" and r.sequence_number == raw["dynamodb"]["SequenceNumber"]
    assert r.approximate_creation_time.tzinfo is not None and r.size_bytes == raw["dynamodb"]["SizeBytes"]
