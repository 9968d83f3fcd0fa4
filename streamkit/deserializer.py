"""DynamoDB attribute values -> plain Python, for stream images.

Ours rather than boto3's ``TypeDeserializer`` because it sits on the hot path: one tight
if-chain ordered by how often each type appears in real items, no per-value method
dispatch, integral numbers as ``int`` (what handlers want), binary as ``bytes``. It also
avoids importing boto3 on the happy path. ``bench/`` measures the difference.
"""
from __future__ import annotations

import base64
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

# Same context boto3 uses for DynamoDB numbers: 38 digits, exponent range of the service,
# and every lossy operation trapped, so a value is never silently rounded.
DYNAMODB_CONTEXT = Context(
    Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow]
)
_create_decimal = DYNAMODB_CONTEXT.create_decimal


_SET_TAGS = frozenset({"SS", "NS", "BS"})


class DeserializationError(ValueError):
    """An attribute value that is not valid DynamoDB JSON."""


def _number(text: str) -> int | Decimal:
    if type(text) is not str:
        raise DeserializationError(f"N value must be a string, got {type(text).__name__}")
    # Integers ("42", "-7") are by far the most common numbers; int() is the fast path.
    # Longer texts take the Decimal path, which rejects more than 38 significant digits.
    if len(text) < 39 and "." not in text and "e" not in text and "E" not in text:
        try:
            return int(text)
        except ValueError:
            raise DeserializationError(f"not a DynamoDB number: {text!r}") from None
    try:
        value = _create_decimal(text)
    except Exception as exc:  # decimal signals are not ValueErrors
        raise DeserializationError(f"not a DynamoDB number: {text!r}") from exc
    if not value.is_finite():
        raise DeserializationError(f"not a DynamoDB number: {text!r}")
    if "e" not in text and "E" not in text:
        # "12.50" is fractional, "12.00" is integral: decide from the text, cheaper than
        # Decimal arithmetic.
        if ("." in text and text[-1] in "123456789") or text.partition(".")[2].strip("0"):
            return value
        return int(value)
    if value == value.to_integral_value():
        return int(value)
    return value


def _binary(value: Any) -> bytes:
    # Lambda's JSON events carry base64 text; boto3-parsed records carry bytes already.
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return base64.b64decode(value, validate=True)
    except Exception as exc:
        raise DeserializationError("B value is not base64") from exc


def deserialize_value(av: dict) -> Any:
    """One attribute value such as ``{"S": "ada"}`` -> ``"ada"``."""
    try:
        (tag,) = av
        value = av[tag]
    except (TypeError, ValueError, KeyError):
        raise DeserializationError(f"attribute value must be a one-key dict, got {av!r:.80}") from None
    if tag == "S":
        return value
    if tag == "N":
        return _number(value)
    if tag == "M":
        return _map(value)
    if tag == "L":
        return _list(value)
    if tag == "BOOL":
        return value
    if tag == "NULL":
        return None
    if tag == "B":
        return _binary(value)
    if tag in _SET_TAGS:
        if not isinstance(value, list):
            raise DeserializationError(f"{tag} value must be a list, got {type(value).__name__}")
        if tag == "SS":
            try:
                return set(value)
            except TypeError:
                raise DeserializationError("SS items must be strings") from None
        if tag == "NS":
            return {_number(v) for v in value}
        return {_binary(v) for v in value}
    raise DeserializationError(f"unknown DynamoDB type tag {tag!r}")


def _map(image: dict) -> dict:
    # The commonest scalar types are inlined (no call per attribute), and shape checks
    # come for free from the unpacking: anything odd falls back to the strict path,
    # which raises the precise error.
    out = {}
    try:
        for name, av in image.items():
            (tag,) = av
            value = av[tag]
            if tag == "S":
                out[name] = value
            elif tag == "N":
                # Non-negative integers inline (one C call decides); a non-str raises
                # TypeError/AttributeError and takes the strict path.
                if len(value) < 39 and value.isdigit():
                    out[name] = int(value)
                else:
                    out[name] = _number(value)
            elif tag == "BOOL":
                out[name] = value
            elif tag == "M":
                out[name] = _map(value)
            elif tag == "L":
                out[name] = _list(value)
            elif tag == "NULL":
                out[name] = None
            elif tag == "SS" and type(value) is list:
                out[name] = set(value)  # unhashable items raise TypeError: strict path
            else:
                out[name] = deserialize_value(av)
    except (TypeError, ValueError, KeyError, AttributeError):
        if not isinstance(image, dict):
            raise DeserializationError(f"M value must be an object, got {type(image).__name__}") from None
        return {name: deserialize_value(av) for name, av in image.items()}
    return out


def _list(values: list) -> list:
    out = []
    append = out.append
    try:
        for av in values:
            (tag,) = av
            value = av[tag]
            if tag == "S":
                append(value)
            elif tag == "N":
                if len(value) < 39 and value.isdigit():
                    append(int(value))
                else:
                    append(_number(value))
            elif tag == "M":
                append(_map(value))
            else:
                append(deserialize_value(av))
    except (TypeError, ValueError, KeyError, AttributeError):
        if not isinstance(values, list):
            raise DeserializationError(f"L value must be a list, got {type(values).__name__}") from None
        return [deserialize_value(av) for av in values]
    return out


def deserialize_image(image: dict | None) -> dict | None:
    """A whole image (``NewImage``/``OldImage``/``Keys``) -> dict of plain values."""
    if image is None:
        return None
    if not isinstance(image, dict):
        raise DeserializationError(f"image must be a dict, got {type(image).__name__}")
    return _map(image)
