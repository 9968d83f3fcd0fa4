"""slack-notifier: post each new signup (INSERT) to a Slack incoming webhook, at most once.

* INSERT only: MODIFY/REMOVE return at once (serverless.yml also filters them out at the
  event source, so they are not even delivered in AWS).
* At most once per eventID (Slack webhooks have no idempotency key): the message is built
  and the client made first (a schema or configuration error fails the record before
  anything is claimed), then the post runs behind ``streamkit.idempotency`` keyed on
  ``slack-notifier#<eventID>`` in ``IDEMPOTENCY_TABLE``. A redelivered or reprocessed record
  that was already posted is a no-op success.
* Which failures may be retried is decided by what they prove (docs/consumers.md):
  - provably not posted -> the claim is released, and: 429 -> ``TransientError(retry_after=
    <Retry-After>)``; connection refused, DNS failure, connect timeout -> ``TransientError``;
    other 4xx (``invalid_payload``, ``no_service``...) -> ``SlackWebhookError`` (permanent);
  - maybe posted (read timeout, connection reset or closed after sending, 5xx) -> the send
    counts as done: logged as ``doubtful_send``, metric ``doubtful_sends``, never retried.
* Webhook URL: ``SLACK_WEBHOOK_URL`` (local) or ``SLACK_WEBHOOK_URL_PARAM`` (SSM SecureString,
  read with Powertools Parameters and cached).
"""
from __future__ import annotations

from typing import Any

from streamkit import PermanentError, StreamRecord, TransientError, idempotency
from streamkit.idempotency import Idempotency, mark_not_sent, record_key
from streamkit.settings import Setting

from .secrets import get_secret, secret_settings
from .users import USER_SCHEMA_MODE, display_name, user_id

CONSUMER = "slack-notifier"
SLACK_TIMEOUT_S = Setting(
    "SLACK_TIMEOUT_S", "timeout of one webhook post, in seconds", parse=float, default=5.0, low=0.1, high=60
)
SETTINGS = (
    *secret_settings("SLACK_WEBHOOK_URL", "the Slack incoming webhook URL"),
    SLACK_TIMEOUT_S,
    *idempotency.SETTINGS,
    USER_SCHEMA_MODE,
)

_clients: dict[str, Any] = {}
_guard = Idempotency(CONSUMER)


class SlackWebhookError(PermanentError):
    """Slack refused the message (4xx other than 429): retrying the same payload cannot help."""

    def __init__(self, status: int, body: str):
        super().__init__(f"Slack webhook answered {status} {body!r}")
        self.status, self.body = status, body


def _client(url: str) -> Any:
    client = _clients.get(url)
    if client is None:
        from .slack_webhook import WebhookClient

        # No client retries: the streamkit loop retries within the Lambda deadline, and only
        # failures that prove nothing was posted (the claim is released for those).
        client = _clients[url] = WebhookClient(url, timeout=SLACK_TIMEOUT_S.read())
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


def _never_reached_slack(exc: BaseException) -> bool:
    """True when urllib failed while connecting, so no request can have reached Slack.

    urllib wraps errors of the connect-and-send step in ``URLError``; errors while waiting
    for the answer (read timeout, reset, closed) come through bare: those are doubtful.
    """
    import errno
    import socket
    from urllib.error import HTTPError, URLError

    if not isinstance(exc, URLError) or isinstance(exc, HTTPError):
        return False
    reason = exc.reason
    if isinstance(reason, (ConnectionRefusedError, socket.gaierror, TimeoutError)):
        return True  # refused, DNS, connect timeout (a small body goes out in one write once connected)
    return isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def post(payload: dict, client: Any = None) -> None:
    """Send ``payload`` to the webhook, translating failures into the streamkit vocabulary.

    Failures that prove the message was not posted are marked ``not_sent`` (the guard then
    releases its claim); every other failure leaves the guard to count a doubtful send.
    """
    if client is None:
        client = _client(get_secret("SLACK_WEBHOOK_URL"))
    try:
        response = client.send_dict(payload)
    except Exception as exc:
        if _never_reached_slack(exc):
            raise mark_not_sent(TransientError(f"Slack webhook unreachable: {exc}")) from exc
        raise TransientError(f"Slack webhook: no answer after sending ({type(exc).__name__}: {exc})") from exc
    status, body = response.status_code, (response.body or "")
    if 200 <= status < 300:
        return
    if status == 429:
        raw = (response.headers or {}).get("Retry-After") or (response.headers or {}).get("retry-after")
        try:
            retry_after = float(raw) if raw is not None else None
        except ValueError:
            retry_after = None
        raise mark_not_sent(TransientError(f"Slack rate limited (429, Retry-After={raw})", retry_after=retry_after))
    if status >= 500:  # an answer after Slack had the request: it may have posted
        raise TransientError(f"Slack webhook answered {status} {body!r:.200}")
    raise mark_not_sent(SlackWebhookError(status, body))


def warm_up() -> None:
    """Import the webhook client (urllib) during init, not on the first record."""
    from . import slack_webhook  # noqa: F401


def slowest_call_s() -> float:
    """The longest one post can take (the stream loop's deadline margin covers it): urllib
    applies SLACK_TIMEOUT_S to the connect and again to the wait for the answer."""
    return 2 * SLACK_TIMEOUT_S.read()


def handle_record(record: StreamRecord) -> None:
    """Post a signup message for an INSERT, at most once per eventID; ignore other events."""
    if record.event_name != "INSERT":
        return
    if record.new_image is None:
        raise PermanentError("INSERT without NewImage: the stream view type must include new images")
    item = dict(record.new_image)
    item.setdefault("user_id", user_id(record.keys))
    payload = message_for(item)  # a schema error fails here, before any claim: a fixed consumer posts it
    client = _client(get_secret("SLACK_WEBHOOK_URL"))  # so does a configuration error
    _guard.once(record_key(CONSUMER, record), lambda: post(payload, client))
