"""``--handler`` targets for the CLI tests: the real consumer's handle_record, counted (one line
per call in ``$CALL_LOG``), and optionally killed with SIGKILL at call ``$KILL_AT`` (a laptop
dying mid-page: no cleanup, no last checkpoint)."""
from __future__ import annotations

import os
import signal
import threading

from consumers.search_indexer import handle_record as search_handle_record

_lock = threading.Lock()
_calls = 0


def counted_search(record) -> None:
    global _calls
    with _lock:
        _calls += 1
        n = _calls
        with open(os.environ["CALL_LOG"], "a") as f:
            f.write(f"{record.keys['user_id']} {record.event_name}\n")
            f.flush()
            os.fsync(f.fileno())
    kill_at = int(os.environ.get("KILL_AT") or 0)
    if kill_at and n >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    search_handle_record(record)
