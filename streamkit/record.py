"""``StreamRecord``: a lazy, read-only view over one Lambda DynamoDB stream record."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .ddbjson import DeserializationError, deserialize_image
from .errors import MalformedRecordError

EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
_UNSET: Any = object()


class StreamRecord:
    """One stream record as Lambda delivers it (contract 2 of DESIGN.md).

    Construction validates only what identifies the record (``dynamodb``, ``eventName``,
    ``SequenceNumber``); images are deserialized the first time they are read and cached,
    so a handler that looks only at ``keys`` never pays for ``NewImage``.
    """

    __slots__ = ("raw", "_ddb", "_keys", "_new", "_old")

    def __init__(self, raw: dict):
        if not isinstance(raw, dict):
            raise MalformedRecordError(f"stream record must be an object, got {type(raw).__name__}")
        ddb = raw.get("dynamodb")
        seq = ddb.get("SequenceNumber") if isinstance(ddb, dict) else None
        seq = seq if isinstance(seq, str) and seq else None
        if not isinstance(ddb, dict):
            raise MalformedRecordError("stream record has no 'dynamodb' object", seq)
        if seq is None:
            raise MalformedRecordError("stream record has no dynamodb.SequenceNumber", None)
        name = raw.get("eventName")
        if name not in EVENT_NAMES:
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
        return datetime.fromtimestamp(float(value), tz=timezone.utc)

    # --- images (lazy, once) ----------------------------------------------------------
    def _image(self, field: str) -> dict | None:
        try:
            return deserialize_image(self._ddb.get(field))
        except DeserializationError as exc:
            raise MalformedRecordError(f"dynamodb.{field}: {exc}", self.sequence_number) from exc

    @property
    def keys(self) -> dict:
        if self._keys is _UNSET:
            self._keys = self._image("Keys") or {}
        return self._keys

    @property
    def new_image(self) -> dict | None:
        if self._new is _UNSET:
            self._new = self._image("NewImage")
        return self._new

    @property
    def old_image(self) -> dict | None:
        if self._old is _UNSET:
            self._old = self._image("OldImage")
        return self._old

    def __repr__(self) -> str:
        return f"StreamRecord({self.event_name} seq={self.sequence_number} keys={self._ddb.get('Keys')!r:.120})"
