"""The per-record fast paths (issue 16's 200 B rows) behave exactly like the general code they
skip: ``stream_record`` (the loop's constructor) like ``StreamRecord(...)``, the one-string-key
``keys`` and the inline ``new_image`` like ``_image``, and an uncached string read of a
``LazyImage`` like a decoded, cached one, and Kinesis ``data`` through json's C scanner like
``json.loads``. Every record shape here, well-formed or not."""
from __future__ import annotations

import base64
import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamkit import sources
from streamkit.ddbjson import DeserializationError, deserialize_image
from streamkit.errors import MalformedRecordError
from streamkit.image import LazyImage
from streamkit.record import KinesisStreamRecord, StreamRecord, stream_record
from streamkit.testing import make_record

_odd = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2), st.just({}))
_av = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=5)),
    st.builds(lambda n: {"N": str(n)}, st.integers(-5, 5)),
    st.just({"S": 5}), st.just({"S": "a", "N": "1"}), st.just({"N": "x"}), st.just({"B": "AA=="}), _odd,
)
_image = st.one_of(st.dictionaries(st.sampled_from(["user_id", "sk", "n"]), _av, max_size=3), _odd)


@st.composite
def raw_records(draw):
    """Lambda records, then bent: any field missing, of the wrong type, or odd."""
    kinesis = draw(st.booleans())
    raw = make_record(draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"])), keys={"user_id": "u1"},
                      new_image={"user_id": "u1", "n": 1}, source="kinesis" if kinesis else "dynamodb")
    if kinesis:
        if draw(st.integers(0, 3)) == 0:
            raw["kinesis"]["sequenceNumber"] = draw(_odd)
        if draw(st.integers(0, 3)) == 0:
            raw["dynamodb"] = draw(_odd)  # a Kinesis record is one only without a 'dynamodb' object
        return raw if draw(st.booleans()) else draw(st.one_of(_odd, st.just({"kinesis": draw(_odd)})))
    ddb = raw["dynamodb"]
    for field in ("Keys", "NewImage", "OldImage"):
        choice = draw(st.integers(0, 2))
        if choice == 1:
            ddb[field] = draw(_image)
        elif choice == 2:
            ddb.pop(field, None)
    if draw(st.integers(0, 5)) == 0:
        ddb["SequenceNumber"] = draw(_odd)
    if draw(st.integers(0, 5)) == 0:
        raw["eventName"] = draw(st.one_of(_odd, st.just("DELETE")))
    if draw(st.integers(0, 8)) == 0:
        raw["dynamodb"] = draw(_odd)
    if draw(st.integers(0, 12)) == 0:
        return draw(_odd)
    return raw


def _outcome(fn):
    try:
        return ("ok", fn())
    except MalformedRecordError as exc:
        return ("malformed", str(exc), exc.sequence_number)


def _view(record: StreamRecord) -> tuple:
    images = []
    for name in ("new_image", "old_image"):
        images.append(_outcome(lambda name=name: _plain(getattr(record, name))))
    return (type(record), record.sequence_number, _outcome(lambda: record.event_name), _outcome(lambda: record.keys),
            *images)


def _plain(image):
    if image is None:
        return None
    assert isinstance(image, LazyImage)
    return {name: _outcome(lambda name=name: image[name]) for name in image}


@settings(max_examples=400, deadline=None)
@given(raw_records())
def test_stream_record_is_streamrecord(raw):
    fast = _outcome(lambda: stream_record(copy.deepcopy(raw)))
    slow = _outcome(lambda: StreamRecord(copy.deepcopy(raw)))
    assert fast[0] == slow[0]
    if fast[0] == "ok":
        assert _view(fast[1]) == _view(slow[1])
    else:
        assert fast == slow


@settings(max_examples=300, deadline=None)
@given(_image)
def test_keys_fast_path_is_the_general_decode(keys):
    raw = make_record("INSERT", keys={"user_id": "u1"})
    raw["dynamodb"]["Keys"] = keys
    got = _outcome(lambda: stream_record(raw).keys)
    if keys is None:
        assert got == ("ok", {})
        return
    try:
        expected = deserialize_image(keys) or {}
    except DeserializationError:
        assert got[0] == "malformed" and got[1].startswith("dynamodb.Keys:")
    else:
        assert got == ("ok", expected)
        assert type(got[1]) is dict


def test_kinesis_records_decode_before_the_inline_reads():
    raw = make_record("INSERT", keys={"user_id": "u1"}, new_image={"user_id": "u1", "n": 1}, source="kinesis")
    record = stream_record(raw)
    assert type(record) is KinesisStreamRecord
    assert record.new_image == {"user_id": "u1", "n": 1} and record.keys == {"user_id": "u1"}
    record = stream_record(raw)
    assert record.keys == {"user_id": "u1"} and record.new_image["n"] == 1


def test_string_reads_are_the_images_own_objects_and_never_stale():
    raw_image = {"s": {"S": "text"}, "n": {"N": "1"}, "bad": {"S": "a", "N": "1"}}
    image = StreamRecord(make_record("INSERT", keys={"user_id": "u1"}, new_image={"user_id": "u1"})).new_image
    image = LazyImage(raw_image, "dynamodb.NewImage")
    first = image["s"]
    assert first is raw_image["s"]["S"] and image["s"] is first and image.get("s") is first
    assert image["n"] == 1 and image["n"] is image["n"]
    with pytest.raises(MalformedRecordError, match=r"dynamodb\.NewImage\.bad"):
        image["bad"]  # two tags: not a string attribute, whatever its "S"
    del raw_image["bad"]
    assert dict(image) == {"s": "text", "n": 1} and image["s"] is first


_CHANGE = {"eventName": "INSERT", "dynamodb": {"Keys": {"user_id": {"S": "u\u00e9"}}}}
_JSON = json.dumps(_CHANGE, ensure_ascii=False)


@pytest.mark.parametrize("payload", [
    _JSON.encode(), (" \n" + _JSON + " \r\n").encode(), ("\ufeff" + _JSON).encode("utf-8"), _JSON.encode("utf-16"),
    _JSON.encode("utf-32-le"), (_JSON + " x").encode(), (_JSON + _JSON).encode(), b"[1, 2]", b"", b"  ", b"\xff\xfe\xfd",
    b'{"a": 1', b'{"a": NaN}', b"null", b'"text"',
], ids=repr)
def test_kinesis_data_decodes_as_json_loads_does(payload):
    """The C scanner's shortcut for ``kinesis.data`` takes exactly what ``json.loads`` takes: the
    same change, or a ValueError where json.loads refuses the text or it is not an object."""
    data = base64.b64encode(payload).decode()
    try:
        expected = json.loads(payload)
    except ValueError:
        expected = None
    if isinstance(expected, dict):
        assert sources.decode_data(data) == expected
    else:
        with pytest.raises(ValueError, match="kinesis.data"):
            sources.decode_data(data)
