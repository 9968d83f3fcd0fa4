"""What protects the page and says who is asking: response headers, trusted hosts, the caller.

- **Headers** on every response: a CSP that allows only this origin's own script and style
  (no inline script: the page's code is ``static/app.js``), ``frame-ancestors 'none'`` (no
  framed click can start a job), ``nosniff``, ``no-referrer`` and ``Cache-Control: no-store``
  (failure details never sit in a shared cache).
- **Trusted hosts** (Flask's ``TRUSTED_HOSTS``): a request whose ``Host`` is not the API's own
  (loopback locally, the API Gateway domain in AWS, or ``OPSAPI_TRUSTED_HOSTS``) is refused.
- **The caller**: on AWS the HTTP API's IAM authorizer puts the signer's ARN in the request
  context (serverless-wsgi passes the event through as ``serverless.event``); locally there is
  none and the caller says so.
"""
from __future__ import annotations

import os
from typing import Any

from flask import Request, Response

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


def trusted_hosts(env: Any = None) -> list[str]:
    """``OPSAPI_TRUSTED_HOSTS`` (comma-separated; ``.example.com`` allows its subdomains), else
    loopback and this region's API Gateway domains."""
    env = os.environ if env is None else env
    configured = [h.strip() for h in (env.get("OPSAPI_TRUSTED_HOSTS") or "").split(",") if h.strip()]
    if configured:
        return configured
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return [*LOCAL_HOSTS, f".execute-api.{region}.amazonaws.com"]


def add_headers(resp: Response) -> Response:
    for name, value in HEADERS.items():
        resp.headers[name] = value
    return resp


def caller_of(request: Request) -> dict:
    """Who sent ``request``: ``{"arn", "source", "display"}``.

    HTTP API (payload 2.0) with IAM authorization: ``requestContext.authorizer.iam.userArn``;
    a REST API (1.0): ``requestContext.identity.userArn``. Locally there is no request context."""
    event = request.environ.get("serverless.event") or {}
    context = event.get("requestContext") if isinstance(event, dict) else None
    context = context if isinstance(context, dict) else {}
    iam = ((context.get("authorizer") or {}).get("iam") or {}) if isinstance(context.get("authorizer"), dict) else {}
    arn = iam.get("userArn") or (context.get("identity") or {}).get("userArn")
    if arn:
        return {"arn": arn, "source": "iam", "display": arn,
                "accountId": iam.get("accountId") or (context.get("identity") or {}).get("accountId")}
    where = request.remote_addr or "unknown address"
    return {"arn": None, "source": "local", "display": f"local user at {where} (no IAM identity: not behind API Gateway)"}
