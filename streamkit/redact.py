"""Secret values out of every text we write: the one owner of how a secret is found in a string.

A consumer that reads a secret (a webhook URL, an API token) registers its value here
(``register_secret``; ``consumers.secrets.get_secret`` does it). From then on every failure
description this process writes (``streamkit.excinfo``: the envelope's error, the failure
log, the ledger's error message, the traceback's exception lines) has that value replaced by
``[redacted]``, wherever it hides: as it is, URL-encoded, JSON-escaped, or cut short by
truncation (a prefix of at least ``MIN_PREFIX_CHARS`` at the end of a string or before an
ellipsis). This matters in AWS: the secret lives in SSM, so nothing downstream (the operator
API, a log reader) knows the value to hide; only the process that read it does.

Only VALUES are redacted, never names: an error type such as ``SlackWebhookError`` is data.
The operator API uses the same ``Redactor`` as its last line of defence (``opsapi.secrets``).
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6  # shorter values would mangle ordinary text when replaced
MIN_PREFIX_CHARS = 12  # a truncated secret: this much of its start, at the end of a string
ELLIPSES = ("...", "…")  # where a truncated text says it was cut


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
        self.forms = sorted({f for v in values if len(v) >= MIN_SECRET_CHARS for f in forms(v)},
                            key=len, reverse=True)
        self._prefix = self._prefix_pattern(self.forms)
        # a truncated secret ends where the string or an ellipsis does: look only that far back
        self._window = max((len(f) for f in self.forms), default=0)

    @staticmethod
    def _prefix_pattern(all_forms: list[str]) -> re.Pattern | None:
        """The start of a secret (``MIN_PREFIX_CHARS`` or more of it) at the end of a text."""
        prefixes = {f[:n] for f in all_forms for n in range(MIN_PREFIX_CHARS, len(f))}
        if not prefixes:
            return None
        return re.compile("(?:" + "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True)) + r")\Z", re.S)

    def text(self, s: str) -> str:
        for f in self.forms:
            if f in s:
                s = s.replace(f, REDACTED)
        if self._prefix is not None and len(s) >= MIN_PREFIX_CHARS:
            s = self._cut_prefixes(s)
        return s

    def _cut_prefixes(self, s: str) -> str:
        """Replace a secret's start left by truncation: before the end of ``s`` or an ellipsis."""
        ends = {len(s)}
        for mark in ELLIPSES:
            at = s.find(mark)
            while at != -1:
                ends.add(at)
                at = s.find(mark, at + 1)
        limit = len(s) + 1
        assert self._prefix is not None
        for end in sorted(ends, reverse=True):  # right to left: earlier positions stay valid
            if end >= limit:
                continue
            start = max(0, end - self._window)
            m = self._prefix.search(s, start, end)
            if m:
                s = s[:m.start()] + REDACTED + s[end:]
                limit = m.start()
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


# ---- the secrets this process has read --------------------------------------------------------
_lock = threading.Lock()
_values: set[str] = set()
_redactor: Redactor | None = None


def register_secret(value: str | None) -> None:
    """Hide ``value`` from every failure description this process writes from now on (a rotated
    secret is added; the old value stays hidden too)."""
    global _redactor
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
        return
    with _lock:
        if value not in _values:
            _values.add(value)
            _redactor = Redactor(_values)


def redact(text: str) -> str:
    """``text`` without any registered secret value (free when none is registered)."""
    r = _redactor
    return text if r is None or not text else r.text(text)


def forget_secrets() -> None:
    """Tests: start from a process that has read no secret."""
    global _redactor
    with _lock:
        _values.clear()
        _redactor = None
