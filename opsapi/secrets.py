"""Keep secret values out of every response, whatever form they take there.

Only VALUES are redacted, never names: an error type such as ``SlackWebhookError`` or a
count keyed by it is data an operator needs. The values are those of secret-named variables
(``…TOKEN``, ``…WEBHOOK…``, ``…SECRET…``, ``…PASSWORD``, ``…PRIVATE_KEY``, ``…CREDENTIAL…``) in
this process's environment and in the consumer functions' environments read so far. A value
is found wherever a captured error message may carry it: as it is, URL-encoded (``%2F``,
``+``), JSON-escaped (``\\/``, ``\\u0026``), and cut short by truncation (a prefix of at least
``MIN_PREFIX_CHARS`` at the end of a string, or before an ellipsis).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

SECRET_NAME = re.compile(r"TOKEN|SECRET|WEBHOOK|PASSWORD|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6  # shorter values would mangle ordinary text when replaced
MIN_PREFIX_CHARS = 12  # a truncated secret: this much of its start, at the end of a string
ELLIPSES = ("...", "…", "…)", "...)")


def is_secret_name(name: str) -> bool:
    """A variable whose value is a secret (``*_PARAM`` names only where one is kept in SSM)."""
    return bool(SECRET_NAME.search(name or "")) and not name.endswith("_PARAM")


def secret_values(*envs: Mapping[str, str]) -> list[str]:
    """Values of secret-named variables in ``envs`` (default: this process's environment)."""
    values: set[str] = set()
    for env in envs or (os.environ,):
        for name, value in env.items():
            if is_secret_name(name) and isinstance(value, str) and len(value) >= MIN_SECRET_CHARS:
                values.add(value)
    return sorted(values, key=len, reverse=True)  # a secret that contains another is replaced whole


def forms(value: str) -> list[str]:
    """The ways ``value`` can be written in a string: as is, URL-encoded, JSON-escaped."""
    out = [value, quote(value, safe=""), quote(value, safe="/:"), quote_plus(value),
           json.dumps(value)[1:-1], json.dumps(value)[1:-1].replace("/", "\\/"),
           json.dumps(value, ensure_ascii=True)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c")
           .replace(">", "\\u003e")]
    return sorted({f for f in out if f}, key=len, reverse=True)


class Redactor:
    """Replaces secret values (all their forms, and truncated prefixes) in every string of a
    JSON-able value."""

    def __init__(self, values: Iterable[str]):
        self.forms = sorted({f for v in values for f in forms(v)}, key=len, reverse=True)
        self._prefix = self._prefix_pattern(self.forms)

    @staticmethod
    def _prefix_pattern(all_forms: list[str]) -> re.Pattern | None:
        """A string ending in the start of a secret (optionally before an ellipsis)."""
        prefixes = {f[:n] for f in all_forms for n in range(MIN_PREFIX_CHARS, len(f))}
        if not prefixes:
            return None
        alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
        tail = "|".join(re.escape(e) for e in ELLIPSES)
        return re.compile(f"(?:{alternatives})(?=(?:{tail})?$)", re.S)

    def text(self, s: str) -> str:
        for f in self.forms:
            if f in s:
                s = s.replace(f, REDACTED)
        if self._prefix is not None:
            s = self._prefix.sub(REDACTED, s)
        return s

    def value(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj

    def json_text(self, body: str) -> str:
        """A JSON document with every string redacted (unchanged when it is not JSON)."""
        if not self.forms:
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return self.text(body)
        clean = self.value(data)
        return body if clean == data else json.dumps(clean, ensure_ascii=False, separators=(",", ":"))
