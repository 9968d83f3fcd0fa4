"""Keep secrets out of every response: by key name and by value.

Why both: a key named ``CRM_TOKEN`` is easy to drop, but a secret's *value* can also turn up
inside an error message captured from a consumer (a webhook URL in a Slack error, say), so
the known values are replaced wherever they appear in a response body.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_NAME = re.compile(r"TOKEN|SECRET|WEBHOOK|PASSWORD|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6  # shorter values would mangle ordinary text when replaced


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name or ""))


def secret_values(*envs: Mapping[str, str]) -> list[str]:
    """Values of secret-named variables in ``envs`` (default: this process's environment)."""
    values: set[str] = set()
    for env in envs or (os.environ,):
        for name, value in env.items():
            if is_secret_name(name) and not name.endswith("_PARAM") and isinstance(value, str):
                if len(value) >= MIN_SECRET_CHARS:
                    values.add(value)
    # Longest first, so a secret that contains another is replaced whole.
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def scrub(obj: Any) -> Any:
    """A copy of ``obj`` with secret-named keys redacted (values are handled by ``scrub_text``)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and is_secret_name(k) and not k.endswith("_PARAM") else scrub(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj
