"""streamkit: consume a DynamoDB stream on Lambda with one loop and a failure policy per consumer."""
from .batch import Decision, Failure, Settlement
from .errors import (
    ConfigError,
    MalformedEventError,
    MalformedRecordError,
    PermanentError,
    TransientError,
    is_transient,
)
from .handler import stream_handler
from .policies import DlqCapture, FailurePolicy, HardFail, SoftFail
from .record import StreamRecord

__all__ = [
    "StreamRecord",
    "stream_handler",
    "FailurePolicy",
    "SoftFail",
    "HardFail",
    "DlqCapture",
    "Decision",
    "Failure",
    "Settlement",
    "TransientError",
    "PermanentError",
    "ConfigError",
    "MalformedEventError",
    "MalformedRecordError",
    "is_transient",
]
