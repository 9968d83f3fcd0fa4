"""POST a message to a Slack incoming webhook with the standard library.

What slack-notifier needs of a client: one JSON POST with a timeout, the answer's status,
body and headers, and the transport's own exceptions (``URLError`` for a connect failure,
bare ``OSError``/``TimeoutError`` while waiting for the answer: the consumer tells them
apart). ``slack_sdk``'s ``WebhookClient`` does the same over ``urllib``, but importing it
imports all of ``slack_sdk`` (its Web API client with it): most of the function's cold start.
"""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from urllib.error import HTTPError

USER_AGENT = "userstream-slack-notifier (urllib)"


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class WebhookClient:
    """One webhook URL; ``send_dict(payload)`` posts it, never retries (the loop decides)."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url
        self.timeout = timeout

    def send_dict(self, payload: dict) -> WebhookResponse:
        """The answer, whatever its status (an HTTP error is an answer, not an exception);
        transport failures raise as ``urllib`` raises them."""
        request = urllib.request.Request(
            self.url, data=json.dumps(payload).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json;charset=utf-8", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                charset = response.headers.get_content_charset() or "utf-8"
                return WebhookResponse(response.status, response.read().decode(charset, "replace"),
                                       dict(response.headers.items()))
        except HTTPError as exc:
            charset = exc.headers.get_content_charset() or "utf-8" if exc.headers else "utf-8"
            body = exc.read().decode(charset, "replace") if exc.fp is not None else ""
            return WebhookResponse(exc.code, body, dict(exc.headers.items()) if exc.headers else {})
