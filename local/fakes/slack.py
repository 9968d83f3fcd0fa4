"""A Slack incoming-webhook receiver: records (and optionally prints) each message.

Speaks the webhook protocol: ``POST <path>`` with JSON ``{"text": ..., "blocks": ...}``
answers ``200 ok``; a body without text/blocks answers ``400 invalid_payload`` as Slack
does. Faults (``local.fakes.base``): ``fail(429, "rate_limited", headers={"Retry-After": "1"})``,
``fail(500)``; and the outcomes a client cannot tell apart from a failure before the post:
``hang(seconds)`` (message recorded, then no answer: a read timeout), ``reset()`` (recorded,
then the connection reset), ``fail(500, process=True)`` (recorded, then a 500).
"""
from __future__ import annotations

import json
from typing import Any

from .base import FakeServer, Request

WEBHOOK_PATH = "/services/T000LOCAL/B000LOCAL/localwebhooksecret"


class FakeSlack(FakeServer):
    name = "fake-slack"

    def __init__(self, *args: Any, print_messages: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.messages: list[dict] = []
        self.print_messages = print_messages

    @property
    def webhook_url(self) -> str:
        return self.url + WEBHOOK_PATH

    def route(self, req: Request):
        if req.method != "POST" or not req.path.startswith("/services/"):
            return 404, "no_service"
        try:
            payload = req.json()
        except ValueError:
            return 400, "invalid_payload"
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return 400, "invalid_payload"
        with self.lock:
            self.messages.append(payload)
        if self.print_messages:
            print(f"[slack] {payload.get('text') or json.dumps(payload.get('blocks'))}", flush=True)
        return 200, "ok"


def main() -> None:  # python -m local.fakes.slack [port]
    import sys

    fake = FakeSlack(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0, print_messages=True).start()
    fake.serve_until_interrupted(f"SLACK_WEBHOOK_URL={fake.webhook_url}")


if __name__ == "__main__":
    main()
