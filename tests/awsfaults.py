"""Fault injection below our code, for the chaos suite and fault tests: botocore and simulated time.

* ``AwsFaults`` registers a ``before-send`` hook on every botocore client our code creates
  while it is installed (the emulator's and the harness's own clients are made under
  ``exempt()``: they stand for AWS itself). A matching call is answered with the error AWS
  would send (throttling, 500, AccessDenied), fails to connect, or crashes the process
  (``SimulatedCrash``); otherwise it goes to moto untouched. botocore's own retries apply,
  so a fault must outlast them to reach our code.
* ``SimClock`` is the scenario's time: the emulator's clock, the Lambda context's deadline,
  the idempotency guard's clock, and every sleep (botocore retry backoff, the loop's
  retries) advance it instead of waiting.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


class SimulatedCrash(BaseException):
    """The process dies here (a Lambda timeout or OOM at the worst moment): nothing of ours
    may catch it, as nothing can catch a SIGKILL."""


class SimClock:
    """Monotonic scenario time, starting at the wall clock (record ages are real epochs)."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds

    sleep = advance


@dataclass(frozen=True)
class AwsFault:
    """Calls ``after``+1 .. ``after``+``times`` of ``service.operation`` (whose request body
    contains ``target``, when given) in ``phase`` fail as ``kind``."""

    phase: str  # "stream" | "drain"
    service: str  # botocore service id: dynamodb, dynamodb-streams, sqs, s3
    operation: str
    kind: str  # throttle | 500 | denied | connection | crash
    times: int = 1
    after: int = 0
    target: str = ""

    def describe(self) -> str:
        where = f"[{self.target}]" if self.target else ""
        return f"{self.phase}:{self.service}.{self.operation}{where} {self.kind} x{self.times} after {self.after}"


_ERRORS = {
    # kind -> (HTTP status, JSON error type, S3 code)
    "throttle": (400, "ThrottlingException", "SlowDown"),
    "500": (500, "InternalServerError", "InternalError"),
    "denied": (400, "AccessDeniedException", "AccessDenied"),
}


def _error_response(request: Any, service: str, kind: str) -> Any:
    from botocore.awsrequest import AWSResponse

    status, json_type, s3_code = _ERRORS[kind]
    if service == "s3":
        status = {"throttle": 503, "500": 500, "denied": 403}[kind]
        body = f"<Error><Code>{s3_code}</Code><Message>injected {kind}</Message></Error>".encode()
        headers = {"Content-Type": "application/xml"}
    else:
        body = json.dumps({"__type": f"com.amazonaws.injected#{json_type}", "message": f"injected {kind}"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0"}

    class Raw:
        def stream(self, **kwargs: Any) -> Iterator[bytes]:
            yield body

    return AWSResponse(request.url, status, headers, Raw())


class AwsFaults:
    """Install with ``with AwsFaults(clock) as faults:``; set ``faults.plan`` and ``faults.phase``."""

    def __init__(self, clock: SimClock):
        self.clock = clock
        self.plan: list[AwsFault] = []
        self.phase = "stream"
        self.calls: Counter = Counter()  # (phase, service, operation, target) -> calls seen
        self.injected: Counter = Counter()  # fault description -> times injected
        self._lock = threading.Lock()
        self._exempt = threading.local()
        self._saved: dict[str, Any] = {}

    # --- installing -----------------------------------------------------------------------
    def __enter__(self) -> AwsFaults:
        import botocore.endpoint
        import botocore.session

        faults = self
        original = botocore.session.Session.create_client

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            if not getattr(faults._exempt, "on", False):
                client.meta.events.register("before-send", faults._before_send)
            return client

        class _Time:  # botocore's retry backoff sleeps in simulated time
            def __getattr__(self, name: str) -> Any:
                return getattr(time, name)

            def sleep(self, seconds: float) -> None:
                faults.clock.sleep(seconds)

        self._saved = {"create_client": original, "time": botocore.endpoint.time}
        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
        botocore.endpoint.time = _Time()  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: Any) -> None:
        import botocore.endpoint
        import botocore.session

        botocore.session.Session.create_client = self._saved["create_client"]  # type: ignore[method-assign]
        botocore.endpoint.time = self._saved["time"]

    @contextmanager
    def exempt(self) -> Iterator[None]:
        """Clients made inside are AWS's own (the emulator's) or the harness's: no faults."""
        self._exempt.on = True
        try:
            yield
        finally:
            self._exempt.on = False

    def reset(self, plan: list[AwsFault]) -> None:
        with self._lock:
            self.plan = list(plan)
            self.calls.clear()
            self.injected.clear()
            self.phase = "stream"

    # --- the hook -------------------------------------------------------------------------
    def _before_send(self, request: Any, event_name: str = "", **kwargs: Any) -> Any:
        _, service, operation = event_name.split(".", 2)
        body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else str(request.body or "")
        body += " " + str(request.url)
        fault = None
        with self._lock:
            counted: dict[tuple, int] = {}  # one call counts once per (operation, target)
            for f in self.plan:
                if f.phase != self.phase or f.service != service or f.operation != operation:
                    continue
                if f.target and f.target not in body:
                    continue
                key = (f.phase, service, operation, f.target)
                if key not in counted:
                    self.calls[key] += 1
                    counted[key] = self.calls[key]
                if f.after < counted[key] <= f.after + f.times and fault is None:
                    fault = f
            if fault is not None:
                self.injected[fault.describe()] += 1
        if fault is None:
            return None
        if fault.kind == "crash":
            raise SimulatedCrash(f"process killed during {service}.{operation}")
        if fault.kind == "connection":
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url=str(request.url))
        return _error_response(request, service, fault.kind)


@contextmanager
def aws_faults(*faults: AwsFault, clock: SimClock | None = None) -> Iterator[AwsFaults]:
    """For one test: ``faults`` (their ``phase`` must be ``"test"``) hit every client made
    inside the block; botocore's backoff between retries runs in simulated time."""
    injector = AwsFaults(clock or SimClock())
    with injector:
        injector.reset(list(faults))
        injector.phase = "test"
        yield injector
