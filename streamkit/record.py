"""``StreamRecord``: a lazy, read-only view over one Lambda stream record, on either source.

DynamoDB Streams records are read in place, exactly as before Kinesis existed (no extra
cost per record). A Kinesis Data Streams for DynamoDB record (``streamkit.sources``) becomes
a ``KinesisStreamRecord``: same API, its base64 JSON ``kinesis.data`` decoded once, on the
first read of anything inside it (``sequence_number`` never needs it).
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .ddbjson import DeserializationError, deserialize_image, deserialize_map
from .errors import MalformedRecordError
from .image import LazyImage, lazy_image
from .ordering import OrderError, dynamodb_order, kinesis_order, micros_from_creation
from .sources import DYNAMODB, KINESIS, decode_data

EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
_WHERE = {"NewImage": "dynamodb.NewImage", "OldImage": "dynamodb.OldImage"}
_UNSET: Any = object()


class StreamRecord:
    """One stream record as Lambda delivers it (contract 2 of DESIGN.md).

    Construction validates only what identifies the record (``dynamodb``, ``eventName``,
    ``SequenceNumber``). ``keys`` is deserialized on first read; ``new_image``/``old_image``
    are ``LazyImage`` mappings that decode each attribute on its first read, so a handler
    that reads three attributes of a 20 KB item never pays for the rest. A Kinesis record
    (``kinesis`` instead of ``dynamodb``) turns into a ``KinesisStreamRecord``.

    ``change_order`` orders the changes of one item on both sources (``streamkit.ordering``):
    state-sync sinks store it and apply a change only when it is greater.
    """

    __slots__ = ("raw", "_ddb", "_keys", "_new", "_old", "_change")
    source = DYNAMODB

    def __init__(self, raw: dict):
        if not isinstance(raw, dict):
            raise MalformedRecordError(f"stream record must be an object, got {type(raw).__name__}")
        ddb = raw.get("dynamodb")
        if not isinstance(ddb, dict):
            kinesis = raw.get("kinesis")
            if isinstance(kinesis, dict):
                if not isinstance(self, KinesisStreamRecord):
                    self.__class__ = KinesisStreamRecord  # same slots: a view of the other format
                self._start(raw, kinesis)  # type: ignore[attr-defined]
                return
            raise MalformedRecordError("stream record has no 'dynamodb' object (nor a Kinesis 'kinesis' one)", None)
        seq = ddb.get("SequenceNumber")
        if not (isinstance(seq, str) and seq):
            raise MalformedRecordError("stream record has no dynamodb.SequenceNumber", None)
        name = raw.get("eventName")
        if type(name) is not str or name not in EVENT_NAMES:  # an unhashable one would raise TypeError
            raise MalformedRecordError(
                f"unknown eventName {name!r} (expected INSERT, MODIFY or REMOVE)", seq
            )
        self.raw = raw
        self._ddb = ddb
        self._keys = self._new = self._old = _UNSET

    # --- identity -------------------------------------------------------------------
    @property
    def event_id(self) -> str | None:
        return self.raw.get("eventID")

    @property
    def event_name(self) -> str:
        return self.raw["eventName"]

    @property
    def sequence_number(self) -> str:
        return self._ddb["SequenceNumber"]

    @property
    def source_arn(self) -> str | None:
        return self.raw.get("eventSourceARN")

    @property
    def size_bytes(self) -> int | None:
        return self._ddb.get("SizeBytes")

    @property
    def approximate_creation_time(self) -> datetime | None:
        value = self._ddb.get("ApproximateCreationDateTime")
        if value is None:
            return None
        return datetime.fromtimestamp(float(value), tz=UTC)

    @property
    def change_order(self) -> str:
        """Orders the changes of this record's item (``streamkit.ordering``); duplicates of one
        change are equal. Here: creation time to the second, then the sequence number."""
        try:
            return dynamodb_order(self._ddb.get("ApproximateCreationDateTime"), self._ddb["SequenceNumber"])
        except OrderError as exc:
            raise MalformedRecordError(str(exc), self.sequence_number) from None

    def validate(self) -> StreamRecord:
        """Everything a handler will read is readable (on Kinesis this decodes ``data``)."""
        return self

    # --- images (lazy, once; NewImage/OldImage per attribute) ---------------------------
    def _image(self, field: str) -> Any:
        """``Keys`` as a plain dict (small: decoded at once); ``NewImage``/``OldImage`` as a
        ``LazyImage``. ``None`` when the record has no such image."""
        image = self._ddb.get(field)
        if image is None:
            return None
        if field == "Keys":
            if type(image) is dict and len(image) == 1:  # the commonest key: one string attribute
                for name, av in image.items():
                    if type(av) is dict and len(av) == 1 and type(av.get("S")) is str:
                        return {name: av["S"]}
            try:
                return deserialize_map(image) if type(image) is dict else deserialize_image(image)
            except DeserializationError as exc:
                raise MalformedRecordError(f"dynamodb.{field}: {exc}", self.sequence_number) from exc
        if type(image) is not dict:
            raise MalformedRecordError(
                f"dynamodb.{field}: image must be a dict, got {type(image).__name__}", self.sequence_number
            )
        return lazy_image(image, _WHERE.get(field, field), self.raw)  # the record names itself only on error

    @property
    def keys(self) -> dict:
        keys = self._keys
        if keys is _UNSET:
            # The commonest key, one string attribute, read here without the calls of _image
            # (the per-record fixed cost at 200 B: issue 16); anything else goes through it.
            image = self._ddb.get("Keys")
            if type(image) is dict and len(image) == 1:
                for name in image:
                    av = image[name]
                    if type(av) is dict and len(av) == 1 and "S" in av:
                        value = av["S"]
                        if type(value) is str:
                            keys = self._keys = {name: value}
                            return keys
            keys = self._keys = self._image("Keys") or {}
        return keys

    @property
    def new_image(self) -> LazyImage | None:
        """The item after the change; each attribute is decoded when first read (``LazyImage``)."""
        image = self._new
        if image is _UNSET:
            raw = self._ddb.get("NewImage")
            if type(raw) is dict:  # the common case inline; a missing or malformed image: _image
                image = self._new = lazy_image(raw, "dynamodb.NewImage", self.raw)
            else:
                image = self._new = self._image("NewImage")
        return image

    @property
    def old_image(self) -> LazyImage | None:
        """The item before the change; each attribute is decoded when first read (``LazyImage``)."""
        if self._old is _UNSET:
            self._old = self._image("OldImage")
        return self._old

    def __repr__(self) -> str:
        return f"StreamRecord({self.event_name} seq={self.sequence_number} keys={self._ddb.get('Keys')!r:.120})"


class KinesisStreamRecord(StreamRecord):
    """A Kinesis Data Streams for DynamoDB record behind the ``StreamRecord`` API.

    ``sequence_number`` is the Kinesis one (what ``batchItemFailures`` needs), read without
    decoding; ``event_id`` is the DynamoDB change's ``eventID`` (equal for duplicates, so an
    idempotency guard keyed on it drops Kinesis' re-deliveries); ``source_arn`` is the Kinesis
    stream's ARN. Everything else reads the change in ``kinesis.data``, decoded once.
    """

    __slots__ = ()
    source = KINESIS

    def _start(self, raw: dict, kinesis: dict) -> None:
        seq = kinesis.get("sequenceNumber")
        if not isinstance(seq, str) or not seq:
            raise MalformedRecordError("Kinesis record has no kinesis.sequenceNumber", None)
        self.raw = raw
        self._change = self._ddb = self._keys = self._new = self._old = _UNSET

    def _decoded(self) -> dict:
        change = self._change
        if change is _UNSET:
            seq = self.sequence_number
            try:
                change = decode_data(self.raw["kinesis"].get("data"))
            except ValueError as exc:
                raise MalformedRecordError(str(exc), seq) from None
            ddb = change.get("dynamodb")
            if not isinstance(ddb, dict):
                raise MalformedRecordError("the change record in kinesis.data has no 'dynamodb' object", seq)
            if change.get("eventName") not in EVENT_NAMES:
                raise MalformedRecordError(
                    f"unknown eventName {change.get('eventName')!r} in kinesis.data "
                    "(expected INSERT, MODIFY or REMOVE)", seq)
            self._ddb = ddb
            self._change = change
        return change

    def validate(self) -> StreamRecord:
        self._decoded()
        return self

    @property
    def change(self) -> dict:
        """The decoded DynamoDB change record (``tableName``, ``userIdentity``...)."""
        return self._decoded()

    @property
    def event_id(self) -> str | None:
        return self._decoded().get("eventID")

    @property
    def event_name(self) -> str:
        return self._decoded()["eventName"]

    @property
    def sequence_number(self) -> str:
        return self.raw["kinesis"]["sequenceNumber"]

    @property
    def size_bytes(self) -> int | None:
        self._decoded()
        return self._ddb.get("SizeBytes")

    @property
    def approximate_creation_time(self) -> datetime | None:
        self._decoded()
        value = self._ddb.get("ApproximateCreationDateTime")
        if value is None:
            return None
        try:
            micros = micros_from_creation(value)
        except OrderError as exc:
            raise MalformedRecordError(str(exc), self.sequence_number) from None
        return datetime.fromtimestamp(micros // 1_000_000, tz=UTC).replace(microsecond=micros % 1_000_000)

    @property
    def change_order(self) -> str:
        """Creation time to the microsecond (MICROSECOND precision) and a constant tiebreak."""
        self._decoded()
        try:
            return kinesis_order(self._ddb.get("ApproximateCreationDateTime"))
        except OrderError as exc:
            raise MalformedRecordError(str(exc), self.sequence_number) from None

    def _image(self, field: str) -> dict | None:
        self._decoded()
        return super()._image(field)

    # The base class reads ``_ddb`` inline for these: decode ``data`` first.
    @property
    def keys(self) -> dict:
        if self._keys is _UNSET:
            self._decoded()
        return StreamRecord.keys.fget(self)  # type: ignore[attr-defined]

    @property
    def new_image(self) -> LazyImage | None:
        if self._new is _UNSET:
            self._decoded()
        return StreamRecord.new_image.fget(self)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        keys = self._ddb.get("Keys") if self._ddb is not _UNSET else "?"
        name = self._change.get("eventName") if self._change is not _UNSET else "?"
        return f"KinesisStreamRecord({name} seq={self.sequence_number} keys={keys!r:.120})"


_new = object.__new__


def stream_record(raw: Any) -> StreamRecord:
    """``StreamRecord(raw)`` for the loop: a well-formed DynamoDB Streams record is checked and
    viewed here without the class call and its ``__init__`` frame (the per-record fixed cost
    at 200 B: issue 16), a Kinesis one made a ``KinesisStreamRecord`` at once; anything else
    goes through ``StreamRecord(raw)``, which raises as it always has."""
    if type(raw) is dict:
        ddb = raw.get("dynamodb")
        if type(ddb) is dict:
            seq = ddb.get("SequenceNumber")
            name = raw.get("eventName")
            if type(seq) is str and seq and type(name) is str and name in EVENT_NAMES:
                record = _new(StreamRecord)
                record.raw = raw
                record._ddb = ddb
                record._keys = record._new = record._old = _UNSET
                return record
        elif ddb is None:
            kinesis = raw.get("kinesis")
            if type(kinesis) is dict:  # made as a Kinesis view at once: no __class__ switch
                record = _new(KinesisStreamRecord)
                record._start(raw, kinesis)
                return record
    return StreamRecord(raw)
