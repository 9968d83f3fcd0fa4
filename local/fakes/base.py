"""A threaded HTTP server with a request log and injectable faults, shared by the fakes."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ANSWER, HANG, RESET = "answer", "hang", "reset"


@dataclass
class Fault:
    """What happens to the next ``times`` matching requests.

    ``action``: ``answer`` with ``status``/``body``/``headers`` (after ``delay_s``), ``hang``
    (read the request, answer nothing for ``delay_s``, then close: the client's read times
    out) or ``reset`` (read the request, then drop the connection with a TCP RST).
    ``process``: run the request first (the fake's state changes: a Slack message is
    recorded) and only then misbehave; the outcome a client cannot tell from the failure
    happening before (a post that reached Slack, then the answer was lost).
    """

    status: int
    body: Any = ""
    headers: dict = field(default_factory=dict)
    times: int = 1
    path_contains: str = ""
    delay_s: float = 0.0  # sleep before answering (client timeouts)
    action: str = ANSWER
    process: bool = False


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class Response(Exception):
    """Raise from a route to answer with this status and JSON/text body."""

    def __init__(self, status: int, body: Any = None, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class FakeServer:
    """Subclasses implement ``route(request) -> (status, body)``; body dict/list -> JSON."""

    name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.host, self.port, self.verbose = host, port, verbose
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # ends hanging requests when the server stops

    # --- lifecycle ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # headers + body in one segment (no 40 ms delayed-ACK stalls)

            def _serve(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._stopping.clear()
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_until_interrupted(self, banner: str) -> None:
        """For ``python -m local.fakes.<name>``: print how to point a consumer here, serve until Ctrl-C."""
        import time

        if self._server is None:
            self.start()
        print(banner, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self) -> FakeServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- faults ---------------------------------------------------------------------
    def fail(self, status: int, body: Any = "", *, headers: dict | None = None, times: int = 1,
             path_contains: str = "", delay_s: float = 0.0, process: bool = False) -> None:
        """Answer the next ``times`` requests (whose path contains ``path_contains``) with an error
        (``process=True``: after doing what the request asked, e.g. a 500 after posting)."""
        with self.lock:
            self.faults.append(Fault(status, body, headers or {}, times, path_contains, delay_s, ANSWER, process))

    def hang(self, seconds: float = 30.0, *, times: int = 1, path_contains: str = "", process: bool = True) -> None:
        """Read the next requests and answer nothing for ``seconds`` (then close): a read timeout.
        ``process=True`` (default) does the work first: accepted, then the answer is lost."""
        with self.lock:
            self.faults.append(Fault(0, "", {}, times, path_contains, seconds, HANG, process))

    def reset(self, *, times: int = 1, path_contains: str = "", process: bool = True) -> None:
        """Read the next requests, then reset the connection (TCP RST) instead of answering.
        ``process=True`` (default) does the work first: received, then the connection dropped."""
        with self.lock:
            self.faults.append(Fault(0, "", {}, times, path_contains, 0.0, RESET, process))

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path_contains in path and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- plumbing -------------------------------------------------------------------
    def route(self, request: Request) -> tuple[int, Any] | tuple[int, Any, dict]:
        raise NotImplementedError

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if body and (h.headers.get("Content-Encoding") or "").lower() == "gzip":
            import gzip

            body = gzip.decompress(body)
        req = Request(h.command, parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()},
                      {k.lower(): v for k, v in h.headers.items()}, body)
        with self.lock:
            self.requests.append(req)
        fault = self._take_fault(parts.path)
        headers: dict = {}
        if fault is None or fault.process:
            try:
                result = self.route(req)
            except Response as r:
                result = (r.status, r.body, r.headers)
            except Exception as exc:  # a bug in the fake: say so, as a 500
                result = (500, {"message": f"fake server error: {exc!r}"})
            status, payload = result[0], result[1]
            headers = result[2] if len(result) > 2 else {}
        if fault is not None:
            if fault.action == HANG:
                self._stopping.wait(fault.delay_s)
                h.close_connection = True
                return
            if fault.action == RESET:
                _reset_connection(h)
                return
            if fault.delay_s:
                self._stopping.wait(fault.delay_s)
            status, payload, headers = fault.status, fault.body, fault.headers
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
            ctype = "application/json"
        else:
            data = (payload or "").encode() if isinstance(payload, str) else (payload or b"")
            ctype = "text/plain; charset=utf-8"
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        for k, v in headers.items():
            h.send_header(k, str(v))
        h.send_header("Content-Length", str(0 if h.command == "HEAD" else len(data)))
        h.end_headers()
        if h.command != "HEAD" and data:
            h.wfile.write(data)


def _reset_connection(h: BaseHTTPRequestHandler) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed peer or middlebox would."""
    import io
    import socket
    import struct

    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
    except OSError:
        pass
    h.wfile = io.BytesIO()  # socketserver's finish() flushes it: nothing left to write
