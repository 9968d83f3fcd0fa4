"""Lambda entry point of crm-sync (default policy hard-fail)."""
import httpx  # noqa: F401  (imported during init, not on the first record)

from consumers.crm_sync import handle_record
from streamkit import stream_handler

handler = stream_handler("crm-sync", handle_record)
