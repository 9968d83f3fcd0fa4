"""DynamoDB JSON, every way we need it: the one owner of the format.

Three shapes of the same data:

* **Lambda JSON**: what a stream event carries (``{"N": "42"}``, binary as base64 text);
  also what the failure envelope stores and the reprocess worker replays.
* **boto3 low-level**: what ``dynamodb``/``dynamodbstreams`` clients send and return
  (the same tags, binary as ``bytes``).
* **Python**: plain values (``int``/``Decimal``, ``str``, ``bytes``, ``set``, ``list``, ``dict``).

Conversions:

* ``deserialize_value`` / ``deserialize_image``: Lambda JSON or boto3 low-level -> Python.
  The hot path (every image a handler reads). Ours rather than boto3's ``TypeDeserializer``:
  one tight loop per map or list that finds strings and numbers by a key test and the rest
  by an if-chain, no per-value method dispatch, integral numbers as ``int`` (what handlers want), binary as ``bytes``,
  and no boto3 import on the happy path. ``bench/deserializer.py`` measures it.
* ``serialize_value`` / ``serialize_image``: Python -> Lambda JSON (test events, benchmarks).
* ``lambda_to_client`` / ``lambda_image_to_client``: Lambda JSON -> boto3 low-level (a
  ``GetItem`` key built from a captured record); ``client_to_lambda`` /
  ``client_image_to_lambda``: boto3 low-level -> Lambda JSON (records read back from the
  Streams API, items read from the table).
"""
from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from decimal import Clamped, Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded, Underflow
from typing import Any

# Same context boto3 uses for DynamoDB numbers: 38 digits, exponent range of the service,
# and every lossy operation trapped, so a value is never silently rounded.
DYNAMODB_CONTEXT = Context(
    Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow]
)
_create_decimal = DYNAMODB_CONTEXT.create_decimal
# The same, raising on text that is not a number too (instead of returning NaN): the inline fast
# paths below need no is_finite() check, and an error there takes the strict path.
_parse_decimal = Context(
    Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow, InvalidOperation]
).create_decimal


_SET_TAGS = frozenset({"SS", "NS", "BS"})
_NONZERO_DIGITS = frozenset("123456789")


class DeserializationError(ValueError):
    """An attribute value that is not valid DynamoDB JSON."""


def _number(text: str) -> int | Decimal:
    if type(text) is not str:
        raise DeserializationError(f"N value must be a string, got {type(text).__name__}")
    # Fast paths first (the loops in _map/_list inline the first two): integers, then plain
    # decimals ("12.5", "-0.25"): DynamoDB returns numbers normalized, so a last digit of 1-9
    # after a "." means a fraction; fewer than 39 characters cannot exceed 38 digits.
    if len(text) < 39:
        if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
            try:
                return int(text)
            except ValueError:  # digits int() refuses (superscripts): strict path below
                pass
        elif "." in text and text[-1] in _NONZERO_DIGITS and "e" not in text and "E" not in text:
            value = _create_decimal(text)
            if value.is_finite():
                return value
    return _number_strict(text)


def _number_strict(text: str) -> int | Decimal:
    """Every other number text; raises ``DeserializationError`` for what boto3 rejects."""
    # int() also takes surrounding whitespace and "_" separators, which boto3's create_decimal
    # refuses: such texts go to create_decimal below, which refuses them here too.
    if (len(text) < 39 and "." not in text and "e" not in text and "E" not in text and "_" not in text
            and text.strip() == text):
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
    except (TypeError, ValueError, LookupError):
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
    # The commonest types are inlined (no call per attribute); a string or a number is found
    # by a key test (cheaper than unpacking the one-key dict). Shape checks come for free:
    # anything odd raises in here and falls back to the strict path, which raises the
    # precise error.
    out = {}
    try:
        for name, av in image.items():
            if "S" in av and len(av) == 1:
                out[name] = av["S"]
            elif "N" in av and len(av) == 1:
                # Plain fractions, then integers, inline (_number's fast paths); "." first: one
                # scan sends a fraction to its parse without trying it as an integer. A non-str
                # raises TypeError and takes the strict path.
                value = av["N"]
                if "." in value:
                    if value[-1] in _NONZERO_DIGITS and "e" not in value and "E" not in value:
                        out[name] = _parse_decimal(value)  # a fraction; garbage or > 38 digits raise
                    else:
                        out[name] = _number(value)
                elif value.isdigit() and len(value) < 39:
                    out[name] = int(value)
                elif value[:1] == "-" and value[1:].isdigit() and len(value) < 40:
                    out[name] = int(value)
                else:
                    out[name] = _number(value)
            else:
                (tag,) = av
                value = av[tag]
                if tag == "BOOL":
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
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError):  # decimal signals too
        if not isinstance(image, dict):
            raise DeserializationError(f"M value must be an object, got {type(image).__name__}") from None
        return {name: deserialize_value(av) for name, av in image.items()}
    return out


def _list(values: list) -> list:
    out: list = []
    append = out.append
    try:
        for av in values:  # as in _map
            if "S" in av and len(av) == 1:
                append(av["S"])
            elif "N" in av and len(av) == 1:
                value = av["N"]
                if "." in value:
                    if value[-1] in _NONZERO_DIGITS and "e" not in value and "E" not in value:
                        append(_parse_decimal(value))
                    else:
                        append(_number(value))
                elif value.isdigit() and len(value) < 39:
                    append(int(value))
                elif value[:1] == "-" and value[1:].isdigit() and len(value) < 40:
                    append(int(value))
                else:
                    append(_number(value))
            elif "M" in av and len(av) == 1:
                append(_map(av["M"]))
            else:
                append(deserialize_value(av))
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError):  # decimal signals too
        if not isinstance(values, list):
            raise DeserializationError(f"L value must be a list, got {type(values).__name__}") from None
        return [deserialize_value(av) for av in values]
    return out


def deserialize_map(image: dict) -> dict:
    """``deserialize_image`` for an image known to be a dict (the hot path skips the checks)."""
    return _map(image)


def deserialize_image(image: dict | None) -> dict | None:
    """A whole image (``NewImage``/``OldImage``/``Keys``) -> dict of plain values."""
    if type(image) is dict:
        return _map(image)
    if image is None:
        return None
    if not isinstance(image, dict):
        raise DeserializationError(f"image must be a dict, got {type(image).__name__}")
    return _map(image)


# --- Python -> Lambda JSON ------------------------------------------------------------------
class SerializationError(TypeError):
    """A Python value DynamoDB cannot store (a float that is not finite, an empty set...)."""


_INT_LIMIT = 10**38


def _number_text(value: Any) -> str:
    if isinstance(value, int) and -_INT_LIMIT < value < _INT_LIMIT:
        return str(value)
    if isinstance(value, float):
        value = Decimal(repr(value))  # DynamoDB has no floats: 1.25 is stored as "1.25"
    try:
        number = _create_decimal(value)  # 38 digits at most, in range, never rounded
    except Exception as exc:  # decimal signals are not ValueErrors
        raise SerializationError(f"not a DynamoDB number: {value!r}") from exc
    if not number.is_finite():
        raise SerializationError(f"DynamoDB numbers are finite, got {value!r}")
    return str(number)


def _b64_text(value: Any) -> str:
    return base64.b64encode(bytes(value)).decode()


_BINARY = (bytes, bytearray, memoryview)


def serialize_value(value: Any) -> dict:
    """A Python value -> its attribute value as Lambda prints it (binary as base64 text).

    ``bool`` -> BOOL, ``None`` -> NULL, ``int``/``Decimal``/``float`` -> N, ``str`` -> S,
    ``bytes`` -> B, sets of one of those -> SS/NS/BS, sequences -> L, mappings -> M.
    """
    if value is None:
        return {"NULL": True}
    if value is True or value is False:
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (int, float, Decimal)):
        return {"N": _number_text(value)}
    if isinstance(value, _BINARY):
        return {"B": _b64_text(value)}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SerializationError(f"map keys must be strings, got {k!r}")
            out[k] = serialize_value(v)
        return {"M": out}
    if isinstance(value, (set, frozenset)):
        return _serialize_set(value)
    if isinstance(value, (list, tuple)):
        return {"L": [serialize_value(v) for v in value]}
    raise SerializationError(f"cannot store a {type(value).__name__} in DynamoDB: {value!r:.80}")


def _serialize_set(value: Any) -> dict:
    if not value:
        raise SerializationError("DynamoDB has no empty sets")
    if all(isinstance(v, str) for v in value):
        return {"SS": list(value)}
    if all(isinstance(v, (int, float, Decimal)) and not isinstance(v, bool) for v in value):
        return {"NS": [_number_text(v) for v in value]}
    if all(isinstance(v, _BINARY) for v in value):
        return {"BS": [_b64_text(v) for v in value]}
    raise SerializationError(f"a set must hold only strings, only numbers or only binary: {value!r:.80}")


def serialize_image(item: Mapping[str, Any] | None) -> dict | None:
    """A whole item -> an image in Lambda JSON (``None`` stays ``None``)."""
    return None if item is None else {k: serialize_value(v) for k, v in item.items()}


# --- Lambda JSON <-> boto3 low-level -----------------------------------------------------------
def _with_binary(av: dict, convert: Callable[[Any], Any]) -> dict:
    """``av`` with every B/BS payload passed through ``convert`` (the only difference)."""
    ((tag, v),) = av.items()
    if tag == "B":
        return {"B": convert(v)}
    if tag == "BS":
        return {"BS": [convert(x) for x in v]}
    if tag == "M":
        return {"M": {k: _with_binary(x, convert) for k, x in v.items()}}
    if tag == "L":
        return {"L": [_with_binary(x, convert) for x in v]}
    return {tag: v}


def _to_bytes(v: Any) -> Any:
    return base64.b64decode(v) if isinstance(v, str) else v  # bytes already: boto3's shape


def _to_text(v: Any) -> Any:
    return v if isinstance(v, str) else _b64_text(v)  # text already: Lambda's shape


def lambda_to_client(av: dict) -> dict:
    """One attribute value in Lambda JSON (binary as base64 text) -> boto3 low-level (bytes)."""
    return _with_binary(av, _to_bytes)


def client_to_lambda(av: dict) -> dict:
    """One attribute value in boto3 low-level (binary as bytes) -> Lambda JSON (base64 text)."""
    return _with_binary(av, _to_text)


def lambda_image_to_client(image: dict | None) -> dict | None:
    return None if image is None else {k: lambda_to_client(v) for k, v in image.items()}


def client_image_to_lambda(image: dict | None) -> dict | None:
    """A whole image (``Keys``, ``NewImage``, a ``GetItem`` item) -> Lambda JSON."""
    return None if image is None else {k: client_to_lambda(v) for k, v in image.items()}
