"""One description of a failure, formatted once: shared by the failure log and the envelope.

``compact_traceback`` writes plain "File, line, in" frames: Python 3.12's default formatting
re-reads every frame's source to draw ``^^^`` markers (270-290 µs per failure in issue 16's
profile, against ~16-29 µs for this). Chained causes are kept.
"""
from __future__ import annotations

from .redact import redact

MAX_TRACEBACK_CHARS = 8_000


def compact_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and of its causes), one line per frame, no source lines."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        block = ["Traceback (most recent call last):\n"]
        tb = current.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            block.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}\n')
            tb = tb.tb_next
        block.append(exception_line(current) + "\n")
        parts.insert(0, "".join(block))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\nThe above exception led to:\n\n".join(parts)


def exception_line(exc: BaseException) -> str:
    """``KeyError: 'fullname'``, ``consumers.crm_sync.CrmError: ...``: the last line of a traceback."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = f"{cls.__module__}.{name}"
    text = error_message(exc)  # a broken __str__ must not break the failure path
    return f"{name}: {text}" if text else name


def describe_error(exc: BaseException) -> dict:
    """``{"type", "message", "traceback"}`` (the envelope's ``error``); the traceback is capped."""
    text = compact_traceback(exc)
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return {"type": type(exc).__name__, "message": error_message(exc), "traceback": text}


def error_message(exc: BaseException) -> str:
    """``str(exc)`` without the secret values this process has read (``streamkit.redact``):
    the one place every failure description gets its text from."""
    try:
        text = str(exc)
    except Exception:
        return "<exception str() failed>"
    return redact(text)


def drop_tracebacks(exc: BaseException) -> None:
    """Detach the traceback of ``exc`` and of its causes: a traceback holds every frame it
    passed through, with their locals (the whole Lambda event), until the exception dies."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
