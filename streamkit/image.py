"""``LazyImage``: a record's ``NewImage``/``OldImage`` that decodes an attribute on its first read.

Decoding a whole image was about 90% of the per-record time of a handler that reads a few
attributes of a large item (issue 16: 2 µs at 200 B, 41 µs at 2.5 KB, 389 µs at 20 KB,
against under 1 µs for three attributes). A ``LazyImage`` keeps the DynamoDB JSON it was
given and decodes one top-level attribute (with everything nested in it) when it is read,
then caches it; ``dict(image)``, ``items()``, ``values()``, ``==`` and ``repr`` decode the
rest. It is a read-only ``Mapping`` that behaves like the dict it stands for: equal to it,
same keys in the same order, ``dict(...)``/``{**image}`` make that dict, ``copy()`` too.

What it is not: a ``dict`` subclass (``json.dumps`` refuses it instead of writing ``{}``;
pass ``dict(image)``), nor writable. A malformed attribute raises ``MalformedRecordError``
naming it when it is read, so a handler that never reads it is never stopped by it.
"""
from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from .ddbjson import DeserializationError, deserialize_image, deserialize_value
from .errors import MalformedRecordError


class LazyImage(Mapping):
    """A read-only mapping over one image in DynamoDB JSON (``{"name": {"S": "Ada"}, ...}``)."""

    __slots__ = ("_raw", "_values", "_where", "_record")

    def __init__(self, raw: dict, where: str = "image", record: Any = None):
        self._raw = raw  # the attribute values as delivered, never changed
        self._values: dict[str, Any] = {}  # decoded so far, by name
        self._where = where  # "dynamodb.NewImage": names the attribute in errors
        self._record = record  # the Lambda record the image is in (its sequence number, for errors)

    @classmethod
    def _make(cls, raw: dict, where: str, record: Any) -> LazyImage:
        image = _new(cls)  # no __init__ frame: one is made per record
        image._raw, image._values, image._where, image._record = raw, {}, where, record
        return image

    def _decode(self, name: str) -> Any:
        """Decode, cache and return attribute ``name`` (``KeyError`` when there is none)."""
        av = self._raw[name]
        try:
            value = deserialize_value(av)
        except DeserializationError as exc:
            from .sources import sequence_number_of

            raise MalformedRecordError(f"{self._where}.{name}: {exc}", sequence_number_of(self._record)) from exc
        self._values[name] = value
        return value

    def __getitem__(self, name: str) -> Any:
        # Strings are the commonest attribute: read straight from the image, neither decoded
        # nor cached (the value is the image's own str object, so every read returns the same
        # object, as the cache would). Anything else: cached after its first decode.
        av = self._raw[name]
        if type(av) is dict and len(av) == 1 and "S" in av:
            return av["S"]
        values = self._values
        if name in values:
            return values[name]
        return self._decode(name)

    def get(self, name: str, default: Any = None) -> Any:
        values = self._values
        if name in values:
            return values[name]
        if name not in self._raw:
            return default
        return self[name]

    def _fill(self) -> dict[str, Any]:
        """Decode every attribute not read yet (one pass); returns the cache, in image order."""
        values = self._values
        if len(values) != len(self._raw):
            try:
                decoded = deserialize_image(self._raw) or {}
            except DeserializationError:  # say which attribute, as a single read would
                for name in self._raw:
                    if name not in values:
                        self._decode(name)
                decoded = {name: values[name] for name in self._raw}
            else:
                decoded.update(values)  # what was read stays the very object handed out
            self._values = values = decoded
        return values

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._raw)

    def keys(self) -> KeysView[str]:
        """The attribute names. Decodes every attribute first: ``dict(image)`` and
        ``{**image}`` call this before reading each value."""
        return self._fill().keys()

    def to_dict(self) -> dict[str, Any]:
        """Every attribute decoded, as a new plain dict in the image's order."""
        return dict(self._fill())

    copy = to_dict

    def items(self) -> ItemsView[str, Any]:
        return self._fill().items()

    def values(self) -> ValuesView[Any]:
        return self._fill().values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyImage):
            return self._raw is other._raw or self._fill() == other._fill()
        if isinstance(other, dict):
            return len(other) == len(self._raw) and self._fill() == other
        if isinstance(other, Mapping):
            return self._fill() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable, like a dict

    def __or__(self, other: Any) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**self.to_dict(), **other}

    def __ror__(self, other: Any) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**other, **self.to_dict()}

    def __reduce__(self) -> tuple:
        return (dict, (self.to_dict(),))  # pickles and deep-copies as the plain dict

    def __repr__(self) -> str:
        return repr(self.to_dict())


_new = object.__new__
lazy_image = LazyImage._make
