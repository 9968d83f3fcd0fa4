"""Lambda entry point of crm-sync (default policy hard-fail)."""
import httpx  # noqa: F401  (imported during init, not on the first record)

from consumers.crm_sync import handle_record, prepare
from streamkit import stream_handler

prepare()  # missing settings fail the cold start, naming the variable
handler = stream_handler("crm-sync", handle_record)
