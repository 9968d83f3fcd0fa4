"""Shared by the test functions' fresh module copies: what each function was invoked with."""
calls: list[tuple[str, list[str], list[str]]] = []
environ_seen: list[tuple[str, str | None]] = []
remaining_ms: list[int] = []
hooks: list = []  # called with (function name, event) on every invocation
handled: list[tuple[str, str]] = []  # (function name, user_id) for each record a handler applied
responses: list[tuple[str, dict]] = []  # (function name, response) from fn_streamkit
