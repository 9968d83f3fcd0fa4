"""The exception vocabulary shared by the loop, the consumers and the reprocess worker."""
from __future__ import annotations


class StreamkitError(Exception):
    """Base class for errors raised by streamkit itself."""


class ConfigError(StreamkitError, ValueError):
    """A setting is missing or wrong. Raised at cold start; the message names the fix."""


class MalformedEventError(StreamkitError, ValueError):
    """The Lambda event is not a DynamoDB stream event at all (nothing can be processed)."""


class MalformedRecordError(StreamkitError, ValueError):
    """One record in the event is not a valid DynamoDB stream record.

    ``sequence_number`` is set when the record can still be identified (and so reported
    for retry); ``None`` when it cannot.
    """

    def __init__(self, message: str, sequence_number: str | None = None):
        super().__init__(message)
        self.sequence_number = sequence_number


class TransientError(StreamkitError):
    """Raise from ``handle_record`` for a failure worth retrying (rate limit, 5xx, timeout).

    ``retry_after`` (seconds) is honoured as the minimum wait before the next attempt.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(StreamkitError):
    """Raise from ``handle_record`` for a failure no retry can fix (bad data, 4xx)."""


_TRANSIENT_AWS_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
    }
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is worth retrying in-process: throttling, 5xx, timeouts, connection drops.

    Decided without importing botocore or HTTP clients: errors are recognised by their
    shape (``response`` dicts, class names), so the check costs nothing on cold start.
    """
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, (PermanentError, MalformedRecordError)):
        return False
    explicit = getattr(exc, "transient", None)
    if isinstance(explicit, bool):
        return explicit
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    # botocore ClientError: {"Error": {"Code"}, "ResponseMetadata": {"HTTPStatusCode"}}
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code", "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
        return code in _TRANSIENT_AWS_CODES or (isinstance(status, int) and status >= 500)
    kind = type(exc)
    if kind.__module__ == "builtins":  # KeyError, ValueError...: the commonest failures, none of the names below
        return False
    # botocore connection/timeout errors and httpx transport errors, by class name.
    for cls in kind.__mro__:
        name = cls.__name__
        if name in (
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "ConnectionClosedError",
            "TimeoutException",
            "TransportError",
            "NetworkError",
        ):
            return True
    return False
