"""Mask personal data (emails, names) before anything is logged."""
from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from .image import LazyImage

PII_KEYS = frozenset(
    {
        "email", "e_mail", "mail", "name", "fullname", "full_name", "firstname", "first_name",
        "lastname", "last_name", "display_name", "displayname", "phone", "phone_number",
    }
)
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_text(text: str) -> str:
    """``ada.lovelace@example.com`` -> ``a***@example.com`` anywhere inside ``text``."""
    return _EMAIL.sub(r"\1***@\2", text) if "@" in text else text


def mask_name(value: Any) -> str:
    text = str(value)
    return (text[:1] + "***") if text else ""


def mask(value: Any, key: str | None = None) -> Any:
    """Recursively mask PII: values under PII-looking keys, and email addresses anywhere."""
    if key is not None and key.lower() in PII_KEYS and value is not None and not isinstance(value, (dict, list)):
        text = str(value)
        return mask_text(text) if "@" in text else mask_name(text)
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, (dict, LazyImage)):
        return {k: mask(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    return value


def mask_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict:
    """structlog processor: mask every field of the event."""
    return {k: mask(v, k) if k != "event" else mask(v) for k, v in event_dict.items()}
