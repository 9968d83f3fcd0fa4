"""streamkit.redact: a secret this process read never reaches a failure description."""
from __future__ import annotations

import json
from urllib.parse import quote

from streamkit.excinfo import describe_error
from streamkit.redact import REDACTED, Redactor, register_secret

SECRET = "https://hooks.slack.example/services/T000/B000/s3cr3tWebhookValue"


def boom(message: str) -> BaseException:
    try:
        try:
            raise ValueError(f"while posting to {SECRET}")
        except ValueError as cause:
            raise RuntimeError(message) from cause
    except RuntimeError as exc:
        return exc


def test_nothing_registered_nothing_changed():
    info = describe_error(boom(f"to {SECRET}"))
    assert SECRET in info["message"] and SECRET in info["traceback"]


def test_a_registered_secret_is_gone_from_message_and_every_exception_line_of_the_traceback():
    register_secret(SECRET)
    info = describe_error(boom(f"SlackWebhookError at {quote(SECRET, safe='')} / {json.dumps(SECRET)}"))
    assert info["type"] == "RuntimeError"
    assert info["message"] == f"SlackWebhookError at {REDACTED} / \"{REDACTED}\""  # names stay
    assert SECRET not in info["traceback"] and "while posting to [redacted]" in info["traceback"]


def test_truncated_prefixes_are_cut_at_the_end_or_before_an_ellipsis_and_short_ones_left_alone():
    r = Redactor([SECRET])
    assert r.text(f"url was {SECRET[:30]}") == f"url was {REDACTED}"
    assert r.text(f"url was {SECRET[:30]}... (truncated) then more") == f"url was {REDACTED}... (truncated) then more"
    assert r.text(f"a {SECRET[:25]}\u2026 and b {SECRET[:40]}...") == f"a {REDACTED}\u2026 and b {REDACTED}..."
    # ordinary text that merely starts like the secret is not a leak
    assert r.text("see https://hooks.slack.example/ for help") == "see https://hooks.slack.example/ for help"
    assert r.text("https://hoo") == "https://hoo"  # shorter than MIN_PREFIX_CHARS
