"""Which secret values the operator API keeps out of its responses.

Only VALUES are redacted, never names: an error type such as ``SlackWebhookError`` or a
count keyed by it is data an operator needs. The values are those of secret-named variables
(``…TOKEN``, ``…WEBHOOK…``, ``…SECRET…``, ``…PASSWORD``, ``…PRIVATE_KEY``, ``…CREDENTIAL…``) in
this process's environment and in the consumer functions' environments read so far. How a
value is found in a string (as it is, URL-encoded, JSON-escaped, cut short by truncation) is
``streamkit.redact``'s; in AWS the consumers' secrets live in SSM, so the consumer processes
redact them at the source (``streamkit.redact.register_secret``) and this is the last line
of defence.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

from streamkit.redact import MIN_SECRET_CHARS, REDACTED, Redactor, forms

__all__ = ["REDACTED", "Redactor", "forms", "is_secret_name", "secret_values"]

SECRET_NAME = re.compile(r"TOKEN|SECRET|WEBHOOK|PASSWORD|PRIVATE_KEY|CREDENTIAL", re.IGNORECASE)


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
