"""Lambda event filtering (FilterCriteria) for DynamoDB stream records.

Covers the pattern syntax this project uses, as Lambda evaluates it: a pattern is a JSON
object whose leaves are lists of matchers; a record matches if every key of the pattern
matches (nested objects such as ``dynamodb.NewImage.plan.S`` recurse) and a list matches
if any matcher does. Matchers: literal equality (strings, numbers, booleans, null),
``{"exists": bool}``, ``{"prefix": str}``, ``{"suffix": str}``, ``{"equals-ignore-case": str}``,
``{"anything-but": value | [values] | {"prefix": str}}``, ``{"numeric": [op, n, ...]}``.
Several filters in FilterCriteria are OR-ed. Records that match no filter are dropped by the
mapping and checkpointed (never delivered, never retried), as Lambda does.
"""
from __future__ import annotations

import json
import operator
from typing import Any

_MISSING = object()


class FilterPatternError(ValueError):
    """A FilterCriteria pattern this emulator (or Lambda) does not accept."""


def parse_filters(filter_criteria: dict | None) -> list[dict]:
    """``FilterCriteria`` from the template -> list of pattern dicts (patterns are JSON strings)."""
    if not filter_criteria:
        return []
    patterns = []
    for f in filter_criteria.get("Filters") or []:
        raw = f.get("Pattern")
        try:
            pattern = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise FilterPatternError(f"FilterCriteria pattern is not valid JSON: {raw!r} ({exc})") from None
        if not isinstance(pattern, dict):
            raise FilterPatternError(f"FilterCriteria pattern must be a JSON object, got {raw!r}")
        _validate(pattern)
        patterns.append(pattern)
    return patterns


def _validate(pattern: dict, path: str = "") -> None:
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            _validate(value, where)
        elif not isinstance(value, list):
            raise FilterPatternError(f"filter pattern at {where!r} must be a list of matchers or an object, got {value!r}")


def matches_any(record: dict, patterns: list[dict]) -> bool:
    """True when there are no filters or the record matches at least one pattern."""
    return not patterns or any(matches(record, p) for p in patterns)


def matches(data: Any, pattern: dict) -> bool:
    for key, sub in pattern.items():
        value = data.get(key, _MISSING) if isinstance(data, dict) else _MISSING
        if isinstance(sub, dict):
            if not isinstance(value, dict) or not matches(value, sub):
                return False
        elif not _leaf(value, sub):
            return False
    return True


def _leaf(value: Any, matchers: list) -> bool:
    values = value if isinstance(value, list) else [value]
    for m in matchers:
        if isinstance(m, dict) and "exists" in m:
            if bool(m["exists"]) == (value is not _MISSING):
                return True
            continue
        if value is _MISSING:
            continue
        if any(_one(v, m) for v in values):
            return True
    return False


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _equal(v: Any, m: Any) -> bool:
    if isinstance(m, (int, float)) and not isinstance(m, bool):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == float(m)
    return type(v) is type(m) and v == m


_OPS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _one(v: Any, m: Any) -> bool:
    if not isinstance(m, dict):
        return _equal(v, m)
    if len(m) != 1:
        raise FilterPatternError(f"filter matcher must have one operator: {m!r}")
    ((op, arg),) = m.items()
    if op == "prefix":
        return isinstance(v, str) and isinstance(arg, str) and v.startswith(arg)
    if op == "suffix":
        return isinstance(v, str) and isinstance(arg, str) and v.endswith(arg)
    if op == "equals-ignore-case":
        return isinstance(v, str) and v.lower() == str(arg).lower()
    if op == "anything-but":
        if isinstance(arg, dict):
            return not _one(v, arg)
        excluded = arg if isinstance(arg, list) else [arg]
        return not any(_equal(v, x) for x in excluded)
    if op == "numeric":
        n = _num(v)  # DynamoDB numbers arrive as strings ({"N": "42"})
        if n is None or len(arg) % 2:
            return False
        return all(_OPS[arg[i]](n, float(arg[i + 1])) for i in range(0, len(arg), 2))
    raise FilterPatternError(f"unsupported filter operator {op!r}")
