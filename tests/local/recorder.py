"""Shared by the test functions' fresh module copies: what each function was invoked with."""
calls: list[tuple[str, list[str], list[str]]] = []
environ_seen: list[tuple[str, str | None]] = []
remaining_ms: list[int] = []
hooks: list = []  # called with (function name, event) on every invocation
