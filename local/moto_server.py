"""moto as the local runtime, the tests and the bench run it: with its SQS deletes made safe
under concurrency.

moto's ``Queue.delete_message`` copies the queue's message list without the message lock and
assigns the copy back. A threaded moto server serves each request on its own thread, so two
deletes at once can each write back a list that still holds the message the other one just
deleted. No error is returned, and the message is lost from the delete: it stays in flight and
comes back when its visibility timeout runs out. Measured on moto 5.2.5: 1,000 messages
deleted by 8 threads in batches of 10, with 103 and 174 of them still on the queue
afterwards. The same deletes from one thread leave none. Real SQS has no such race. Our
worker deletes from several threads, and the bench's drain at a 2,000 backlog showed the race
as messages "left on the queue".

``patch()`` runs that delete under the queue's own message lock. ``add_message`` and the
long poll's wait already use that lock, and it is reentrant. ``python -m local.moto_server
-H 127.0.0.1 -p PORT`` is ``python -m moto.server`` with the patch applied. ``EmbeddedAws``
applies the same patch in its own process.
"""
from __future__ import annotations

import functools
import sys
from typing import Any

_PATCHED = "_userstream_delete_under_lock"


def patch() -> None:
    """Make moto's SQS ``Queue.delete_message`` atomic (idempotent)."""
    from moto.sqs.models import Queue

    original = Queue.delete_message
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            original(self, receipt_handle)

    setattr(delete_message, _PATCHED, True)
    Queue.delete_message = delete_message  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    patch()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
