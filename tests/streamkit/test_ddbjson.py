"""streamkit.ddbjson, the one owner of DynamoDB JSON: our deserializer agrees with boto3's
TypeDeserializer (property-based, ints aside), our serializer with its TypeSerializer, and every
shape round-trips (Python, Lambda JSON, boto3 low-level, and through a real table on moto)."""
from __future__ import annotations

import base64
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamkit.ddbjson import (
    DeserializationError,
    SerializationError,
    client_image_to_lambda,
    client_to_lambda,
    deserialize_image,
    deserialize_value,
    lambda_image_to_client,
    lambda_to_client,
    serialize_image,
    serialize_value,
)
from streamkit.errors import MalformedRecordError
from streamkit.record import StreamRecord
from streamkit.testing import make_record


def _dynamodb_decimal(sign: int, digits: str, adjusted: int) -> Decimal:
    """Exactly ``len(digits)`` significant digits, magnitude 10**adjusted (no context rounding)."""
    return Decimal((sign, tuple(int(c) for c in digits), adjusted - len(digits) + 1))


# Numbers DynamoDB accepts: up to 38 significant digits, magnitude 1E-130 .. 9.99..E+125.
numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.integers(-1000, 1000),
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20),
    st.builds(
        _dynamodb_decimal,
        st.integers(0, 1),
        st.text("0123456789", min_size=1, max_size=38).map(lambda d: d.lstrip("0") or "0"),
        st.integers(-130, 125),
    ),
    st.sampled_from([Decimal("1E-130"), Decimal("9.9999999999999999999999999999999999999E+125"),
                     Decimal("-1E+125"), Decimal("12.00"), Decimal("-0.0"), Decimal("0E+5"), Decimal("1.5E+3")]),
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
        for a, b in zip(ours, theirs, strict=True):
            assert_same(a, b)
    else:
        assert ours == theirs and type(ours) is type(theirs)


@settings(max_examples=300, deadline=None)
@given(values)
def test_matches_type_deserializer(value):
    boto_av = TypeSerializer().serialize(value)  # binary as bytes, as boto3 clients return it
    lambda_av = serialize_value(value)  # binary as base64 text, as Lambda delivers it
    theirs = boto3_equivalent(TypeDeserializer().deserialize(boto_av))
    assert_same(deserialize_value(lambda_av), theirs)
    assert_same(deserialize_value(boto_av), theirs)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), values, max_size=8))
def test_whole_images_match(item):
    image = {k: serialize_value(v) for k, v in item.items()}
    theirs = {k: boto3_equivalent(TypeDeserializer().deserialize(TypeSerializer().serialize(v))) for k, v in item.items()}
    assert_same(deserialize_image(image), theirs)


BAD_VALUES = [
    {"X": "1"}, {"s": "lowercase tag"},  # unknown tag
    {"N": "abc"}, {"N": "1e999"}, {"N": "1E-200"}, {"N": "NaN"}, {"N": "Infinity"}, {"N": ""},
    {"N": "1" * 39}, {"N": "1." + "1" * 38}, {"N": 5}, {"N": None},  # bad numbers
    {"NS": ["1", "x"]}, {"NS": [5]},
    {"B": "***not base64***"}, {"B": "QUJ"}, {"B": 5}, {"BS": ["AA==", "%%"]},  # bad base64
    {}, {"S": "a", "N": "1"}, "S", None, 5, ["S", "a"], [1], ["S"],  # not a one-key dict
    {"M": "x"}, {"M": None}, {"L": 5}, {"L": None}, {"SS": 5}, {"SS": [["x"]]}, {"BS": None},
    {"M": {"a": {"N": "x"}}}, {"M": {"a": "S"}}, {"L": [{"S": "ok"}, {"Q": 1}]}, {"L": [{"M": 3}]},
]


@pytest.mark.parametrize("av", BAD_VALUES, ids=[repr(v)[:40] for v in BAD_VALUES])
def test_invalid_values_raise_a_clear_error(av):
    with pytest.raises(DeserializationError):
        deserialize_value(av)
    # Nested at any depth, the same error, not a TypeError/AttributeError from the fast path.
    with pytest.raises(DeserializationError):
        deserialize_image({"ok": {"S": "x"}, "bad": av})
    with pytest.raises(DeserializationError):
        deserialize_value({"L": [{"N": "1"}, av]})


# Number texts as anything may write them: signs, leading/trailing zeros, a point anywhere,
# exponents of either case, more than 38 digits, whitespace, underscores, non-ASCII digits.
number_texts = st.one_of(
    st.from_regex(r"\A[-+]?[0-9]{0,41}(\.[0-9]{0,41})?([eE][-+]?[0-9]{1,3})?\Z"),
    st.text(st.sampled_from("0123456789.-+eE _\u0661\u00b2xN"), max_size=12),
    st.sampled_from(["12.0", "12.", ".5", "-.5", "0.0", "-0", "00012", "1.50", "-12.340", "1e2", "1.5E+3",
                     "1" * 38, "1" * 39, "-" + "1" * 38, "0." + "1" * 38, "1." + "0" * 37, "1.5e-130",
                     " 1.5", "1.5 ", "1_000.5", "\u0661\u0662.5", "NaN", "Infinity", "-0.0e5"]),
)


def _boto3_number(text: str):
    """TypeDeserializer's value, or ``None`` where we must refuse it: it raises, or it returns
    NaN/Infinity (it turns garbage into NaN; a number DynamoDB stores is finite)."""
    try:
        value = TypeDeserializer().deserialize({"N": text})
    except Exception:
        return None
    return value if value.is_finite() else None


@settings(max_examples=500, deadline=None)
@given(number_texts)
def test_number_texts_match_type_deserializer_everywhere(text):
    """Every place a number is decoded (an attribute read alone, inside a map, inside a list, in
    a number set) gives TypeDeserializer's value (integral ones as int) or a DeserializationError
    where boto3 refuses the text."""
    theirs = _boto3_number(text)
    places = [
        lambda: deserialize_value({"N": text}),
        lambda: deserialize_image({"a": {"S": "x"}, "n": {"N": text}})["n"],
        lambda: deserialize_value({"L": [{"S": "x"}, {"N": text}]})[1],
        lambda: deserialize_value({"M": {"m": {"M": {"n": {"N": text}}}}})["m"]["n"],
        lambda: next(iter(deserialize_value({"NS": [text]}))),
    ]
    for place in places:
        if theirs is None:
            with pytest.raises(DeserializationError):
                place()
        else:
            assert_same(place(), theirs)


@pytest.mark.parametrize("image", ["x", 5, [{"S": "a"}], ("a",)])
def test_image_must_be_a_dict(image):
    with pytest.raises(DeserializationError):
        deserialize_image(image)
    assert deserialize_image(None) is None


def test_binary_from_lambda_is_bytes():
    assert deserialize_value({"B": base64.b64encode(b"\x00\xff").decode()}) == b"\x00\xff"


def test_record_images_are_lazy_and_read_once():
    raw = make_record("MODIFY", keys={"user_id": "u1"}, new_image={"user_id": "u1", "n": 1}, old_image={"user_id": "u1"})
    # A broken attribute does not stop construction, the keys, or reading the other attributes:
    # each attribute is decoded when it is read (streamkit.image.LazyImage).
    raw["dynamodb"]["NewImage"]["n"] = {"N": "not a number"}
    r = StreamRecord(raw)
    assert r.event_name == "MODIFY" and r.sequence_number == raw["dynamodb"]["SequenceNumber"]
    assert r.keys == {"user_id": "u1"}
    assert r.new_image["user_id"] == "u1"
    with pytest.raises(MalformedRecordError, match=r"dynamodb\.NewImage\.n: not a DynamoDB number"):
        r.new_image["n"]
    # Read once: the same object every time, even if the raw record changes afterwards.
    raw["dynamodb"]["NewImage"]["n"] = {"N": "1"}
    r = StreamRecord(raw)
    first = r.new_image
    assert first == {"user_id": "u1", "n": 1}
    raw["dynamodb"]["NewImage"]["n"] = {"N": "2"}
    assert r.new_image is first and r.new_image == {"user_id": "u1", "n": 1}
    old = r.old_image
    assert old == {"user_id": "u1"} and r.old_image is old and r.keys is r.keys
    assert r.raw is raw and "NewImage" in raw["dynamodb"]  # raw kept as delivered
    assert r.approximate_creation_time.tzinfo is not None and r.size_bytes == raw["dynamodb"]["SizeBytes"]


def test_an_image_that_is_not_an_object_fails_when_read():
    raw = make_record("INSERT", keys={"user_id": "u1"}, new_image={"user_id": "u1"})
    raw["dynamodb"]["NewImage"] = ["not", "a", "map"]
    r = StreamRecord(raw)
    with pytest.raises(MalformedRecordError, match="dynamodb.NewImage: image must be a dict"):
        _ = r.new_image


def test_record_without_images():
    r = StreamRecord(make_record("REMOVE", keys={"user_id": "u9"}))
    assert r.new_image is None and r.old_image is None and r.keys == {"user_id": "u9"}


# --- Python -> Lambda JSON, and Lambda JSON <-> boto3 low-level -------------------------------
@settings(max_examples=300, deadline=None)
@given(values)
def test_serializer_matches_type_serializer(value):
    theirs = TypeSerializer().serialize(value)  # boto3 low-level: binary as bytes
    ours = serialize_value(value)  # Lambda JSON: binary as base64 text
    assert ours == client_to_lambda(theirs)
    assert lambda_to_client(ours) == theirs


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trips(value):
    lambda_av = serialize_value(value)
    assert_same(deserialize_value(lambda_av), value)  # Python -> Lambda JSON -> Python
    client_av = lambda_to_client(lambda_av)
    assert client_to_lambda(client_av) == lambda_av  # Lambda JSON <-> boto3 low-level
    assert_same(deserialize_value(client_av), value)


def test_conversions_tolerate_the_other_shape_and_leave_input_alone():
    lambda_image = {"b": {"B": "AP8="}, "l": {"L": [{"BS": ["AA=="]}, {"M": {"x": {"B": "AQ=="}}}]}, "n": {"N": "1"}}
    client_image = {"b": {"B": b"\x00\xff"}, "l": {"L": [{"BS": [b"\x00"]}, {"M": {"x": {"B": b"\x01"}}}]}, "n": {"N": "1"}}
    assert lambda_image_to_client(lambda_image) == client_image
    assert client_image_to_lambda(client_image) == lambda_image
    assert lambda_image_to_client(client_image) == client_image  # already bytes: unchanged
    assert client_image_to_lambda(lambda_image) == lambda_image  # already text: unchanged
    assert lambda_image["b"] == {"B": "AP8="} and client_image_to_lambda(None) is None


def test_serializer_details():
    assert serialize_value(1.25) == {"N": "1.25"}  # DynamoDB has no floats: stored as a number's text
    assert serialize_value(True) == {"BOOL": True} and serialize_value(1) == {"N": "1"}
    assert serialize_value(None) == {"NULL": True} and serialize_value((1, "a")) == {"L": [{"N": "1"}, {"S": "a"}]}
    assert serialize_value(bytearray(b"\x00")) == {"B": "AA=="}
    assert serialize_image(None) is None


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity"), 10**40 + 1, Decimal("1E-200"), Decimal("1E+200"),
    Decimal("1." + "1" * 38), set(), {1, "a"}, {"k": object()}, {1: "non-text key"}, object(),
], ids=repr)
def test_serializer_refuses_what_dynamodb_cannot_store(value):
    with pytest.raises(SerializationError):
        serialize_value(value)


# Attribute names and text that a real table stores (no surrogates, no empty names).
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
table_values = st.recursive(
    st.one_of(_text, numbers, st.binary(min_size=1, max_size=30), st.booleans(), st.none(),
              st.frozensets(_text.filter(bool), min_size=1, max_size=4).map(set)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_names.filter(lambda n: n != "id"), table_values, max_size=6))
def test_round_trip_through_a_real_table(aws, item):
    """serialize -> boto3 shape -> PutItem -> GetItem -> Lambda JSON -> Python gives the item back."""
    ddb = boto3.client("dynamodb")
    if "roundtrip" not in ddb.list_tables()["TableNames"]:
        ddb.create_table(TableName="roundtrip", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    item = {"id": "item-1", **item}
    ddb.put_item(TableName="roundtrip", Item=lambda_image_to_client(serialize_image(item)))
    stored = ddb.get_item(TableName="roundtrip", Key=lambda_image_to_client(serialize_image({"id": "item-1"})),
                          ConsistentRead=True)["Item"]
    assert_same(deserialize_image(client_image_to_lambda(stored)), item)
