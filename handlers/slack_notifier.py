"""Lambda entry point of slack-notifier (default policy soft-fail; needs IDEMPOTENCY_TABLE)."""
import slack_sdk.webhook  # noqa: F401  (imported during init, not on the first record)

from consumers.slack_notifier import handle_record, prepare
from streamkit import stream_handler

prepare()  # missing settings fail the cold start, naming the variable
handler = stream_handler("slack-notifier", handle_record)
