"""slack-notifier: post each new signup (INSERT) to a Slack incoming webhook, once.

* INSERT only: MODIFY/REMOVE return at once (serverless.yml also filters them out at the
  event source, so they are not even delivered in AWS).
* Once per record: the post runs behind ``streamkit.idempotency`` keyed on
  ``slack-notifier#<eventID>`` in ``IDEMPOTENCY_TABLE``; a redelivered or reprocessed record
  that was already posted is a no-op success.
* Errors: 429 -> ``TransientError(retry_after=<Retry-After>)``; 5xx, timeouts and connection
  errors -> ``TransientError``; other 4xx (``invalid_payload``, ``no_service``...) ->
  ``SlackWebhookError`` (a ``PermanentError``).
* Webhook URL: ``SLACK_WEBHOOK_URL`` (local) or ``SLACK_WEBHOOK_URL_PARAM`` (SSM SecureString,
  read with Powertools Parameters and cached).
"""
from __future__ import annotations

import os
from typing import Any

from streamkit import PermanentError, StreamRecord, TransientError
from streamkit.idempotency import idempotent

from .secrets import get_secret
from .users import display_name, user_id

CONSUMER = "slack-notifier"

_clients: dict[str, Any] = {}


class SlackWebhookError(PermanentError):
    """Slack refused the message (4xx other than 429): retrying the same payload cannot help."""

    def __init__(self, status: int, body: str):
        super().__init__(f"Slack webhook answered {status} {body!r}")
        self.status, self.body = status, body


def _client(url: str) -> Any:
    client = _clients.get(url)
    if client is None:
        from slack_sdk.webhook import WebhookClient

        # No slack_sdk retries: the streamkit loop retries within the Lambda deadline and
        # the idempotency lock is released between attempts.
        client = _clients[url] = WebhookClient(
            url, timeout=int(os.environ.get("SLACK_TIMEOUT_S", "5")), retry_handlers=[]
        )
    return client


def message_for(item: dict) -> dict:
    """The Slack payload for a new user (a short text plus a context line)."""
    name = display_name(item)
    plan = item.get("plan") or "free"
    text = f":tada: New signup: *{name}* ({plan} plan)"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"user `{item.get('user_id')}`"}]},
        ],
    }


def post(payload: dict) -> None:
    """Send ``payload`` to the webhook, translating failures into the streamkit vocabulary."""
    client = _client(get_secret("SLACK_WEBHOOK_URL"))
    try:
        response = client.send_dict(payload)
    except (TimeoutError, OSError) as exc:  # urllib: URLError, socket timeouts, resets
        raise TransientError(f"Slack webhook unreachable: {exc}") from exc
    status, body = response.status_code, (response.body or "")
    if 200 <= status < 300:
        return
    if status == 429:
        raw = (response.headers or {}).get("Retry-After") or (response.headers or {}).get("retry-after")
        try:
            retry_after = float(raw) if raw is not None else None
        except ValueError:
            retry_after = None
        raise TransientError(f"Slack rate limited (429, Retry-After={raw})", retry_after=retry_after)
    if status >= 500:
        raise TransientError(f"Slack webhook answered {status} {body!r:.200}")
    raise SlackWebhookError(status, body)


def prepare() -> None:
    """Cold-start check (the handler calls it): fail the init with a clear message, not every record."""
    from streamkit import ConfigError

    if not os.environ.get("IDEMPOTENCY_TABLE"):
        raise ConfigError("slack-notifier needs IDEMPOTENCY_TABLE (DynamoDB, partition key 'id' (S), TTL 'expires_at')")
    if not (os.environ.get("SLACK_WEBHOOK_URL") or os.environ.get("SLACK_WEBHOOK_URL_PARAM")):
        raise ConfigError("slack-notifier needs SLACK_WEBHOOK_URL (local) or SLACK_WEBHOOK_URL_PARAM (SSM name, in AWS)")


@idempotent(CONSUMER)
def _notify(record: StreamRecord) -> None:
    item = dict(record.new_image or {})
    item.setdefault("user_id", user_id(record.keys))
    post(message_for(item))


def handle_record(record: StreamRecord) -> None:
    """Post a signup message for an INSERT, at most once per eventID; ignore other events."""
    if record.event_name != "INSERT":
        return
    if record.new_image is None:
        raise PermanentError("INSERT without NewImage: the stream view type must include new images")
    _notify(record)
