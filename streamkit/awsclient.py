"""boto3 clients and AWS error codes: the one place that knows how we talk to AWS.

Clients are made lazily (boto3 is a heavy import a soft-fail consumer never needs) and honour
``AWS_ENDPOINT_URL`` natively, so the same code runs on AWS, on moto and in tests.
"""
from __future__ import annotations

import threading
from typing import Any

# Codes AWS uses for "this thing does not exist" across the services we call.
NOT_FOUND_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NoSuchKey",
        "NoSuchBucket",
        "404",
        "ResourceNotFoundException",
    }
)


def make_client(
    service: str,
    *,
    max_attempts: int = 3,
    connect_timeout: float = 2,
    read_timeout: float = 5,
    pool: int = 10,
) -> Any:
    """A boto3 client with standard retries and explicit timeouts (botocore's 60 s read
    timeout is longer than most Lambda deadlines)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, pool),
        ),
    )


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``None`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return (response.get("Error") or {}).get("Code") or None
    return None


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def describe_aws_error(exc: BaseException) -> str:
    """``Code: message`` for an operator or a summary note, capped at 300 characters."""
    return f"{error_code(exc) or type(exc).__name__}: {exc}"[:300]


class ClientCache:
    """Clients made once per owner, under a lock: boto3's default session is not thread-safe
    (the clients themselves are). Pre-made clients (tests) can be passed in."""

    def __init__(self, preset: dict[str, Any] | None = None, **client_options: Any) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {k: v for k, v in (preset or {}).items() if v is not None}
        self._options = client_options

    def get(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            with self._lock:
                client = self._clients.get(service)
                if client is None:
                    client = self._clients[service] = make_client(service, **self._options)
        return client
