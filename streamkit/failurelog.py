"""The failure lines of one batch: what a person needs, at the cost of what it must.

* The **first failure of each error type** in a batch: one line with the record's identity
  (sequence number, event id and name, keys), the error, and its compact traceback (the text
  ``Failure.error_info`` formats once, also used by the dlq-capture envelope).
* **Every further failure**: one compact line (identity, error type, error message), never a
  traceback or the record's body. Under soft-fail this line is the dropped record's only
  trace, so it always names the record.
* **One summary line** ends a batch that had failures: counts by error type and where the
  records went.

Lines are written with ``log.write_line`` (same JSON shape as the structlog lines, a few µs
each instead of 150-200 µs); a compact line's constant part (context, message, level, error
type) is encoded once per batch and its few varying fields formatted with ``log.json_value``
(half the cost of encoding the whole line again: it is most of what a failure costs under
soft-fail). Keys, messages and tracebacks are PII-masked here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import sources
from .ddbjson import deserialize_image
from .excinfo import error_message
from .log import enabled, json_value, line_head, write_line, write_text
from .pii import mask, mask_text

if TYPE_CHECKING:
    from .batch import Failure

MAX_MESSAGE_CHARS = 300  # an error message may quote a record: never the whole body


class FailureLog:
    """Per batch; ``context`` is bound to every line (consumer, policy, aws_request_id)."""

    __slots__ = ("context", "by_type", "_heads")

    def __init__(self, context: dict[str, Any]):
        self.context = context
        self.by_type: dict[str, int] = {}  # error type -> failures in this batch
        self._heads: dict[tuple[str, str], str] = {}  # (message, error type) -> its lines' constant JSON

    def failure(self, message: str, failure: Failure) -> None:
        """Log one failed record: with its traceback if its error type is new in this batch."""
        exc = failure.error
        error_type = type(exc).__name__
        seen = self.by_type.get(error_type, 0)
        self.by_type[error_type] = seen + 1
        if not enabled("error"):
            return
        change = sources.change_of(failure.raw)  # the record itself; decoded data on Kinesis
        seq, name, ident = failure.sequence_number, sources.event_name_of(change), sources.event_id_of(change)
        keys = mask(_plain_keys(change))
        if seen:  # compact: the message only, no traceback formatted at all
            head = self._heads.get((message, error_type))
            if head is None:
                head = self._heads[(message, error_type)] = line_head(
                    self.context, "error", message, {"error_type": error_type})
            write_text(head, f'"sequence_number": {json_value(seq)}, "event_name": {json_value(name)}, '
                             f'"event_id": {json_value(ident)}, "keys": {json_value(keys)}, '
                             f'"error": {json_value(mask_text(_capped(error_message(exc))))}, "repeat": {seen + 1}')
            return
        info = failure.error_info
        write_line(self.context, "error", message, {
            "sequence_number": seq, "event_name": name, "event_id": ident, "keys": keys, "error_type": error_type,
            "error": mask_text(_capped(info["message"])), "exception": mask_text(info["traceback"]),
        })

    def summary(self, counts: dict[str, Any]) -> None:
        """The batch's last line, when anything failed: counts by error type and outcome."""
        if self.by_type:
            write_line(self.context, "error", "batch finished with failures",
                       {"failed_by_type": dict(self.by_type), **counts})


def _capped(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def _plain_keys(change: Any) -> Any:
    """The record's keys as plain values (DynamoDB JSON as delivered when they do not decode)."""
    keys = sources.keys_of(change)
    if keys is None:
        return None
    try:
        return deserialize_image(keys)
    except Exception:
        return keys
