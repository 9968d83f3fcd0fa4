"""Settings as data: every component declares what it reads from the environment, once.

A declaration says the variable's name, how to parse it, its default and bounds, whether it
is required, and one line of documentation. From the declarations come the cold-start
check (``load``), the value at call time (``Setting.read``), and the README's settings
table (``markdown_table``; ``tests/streamkit/test_settings.py`` keeps them in sync)::

    from streamkit.settings import Setting, load

    MARGIN_MS = Setting("REPROCESS_MARGIN_MS", "stop taking messages this long before the deadline",
                        parse=int, default=15_000, low=0, high=600_000)
    SETTINGS = (MARGIN_MS,)

    values = load(SETTINGS, owner="reprocess")   # at cold start / CLI start: one ConfigError
    margin_ms = values["REPROCESS_MARGIN_MS"]    # naming every bad variable and its fix
    margin_ms = MARGIN_MS.read()                 # or at call time (parsed once per raw text)

Components declare their own settings next to their code (``SETTINGS`` tuples):
``streamkit.retry``/``streamkit.deadline`` (the loop), ``streamkit.policies`` (the policy and
dlq-capture), ``streamkit.idempotency``, ``streamkit.log``/``streamkit.metrics``, and each
consumer module. ``stream_handler(..., settings=...)`` loads a consumer's together with the
loop's and its policy's at cold start. An empty value counts as unset.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SERVERLESS_HINT = "serverless.yml, custom.streamConsumers.<consumer>.environment"


@dataclass(frozen=True)
class When:
    """A condition under which a setting is required, with its wording for the docs."""

    doc: str
    test: Callable[[Mapping[str, str]], bool]

    def __call__(self, env: Mapping[str, str]) -> bool:
        return self.test(env)


IN_LAMBDA = When("in Lambda", lambda env: bool(env.get("AWS_LAMBDA_FUNCTION_NAME")))


def lower(text: str) -> str:
    return text.strip().lower()


def upper(text: str) -> str:
    return text.strip().upper()


@dataclass(frozen=True)
class Setting:
    """One environment variable a component reads.

    ``parse`` turns the text into a value (``int``, ``float``, ``str`` or any callable that
    raises ``ValueError`` with a reason; ``expect`` then says what it accepts); ``low``/``high``
    bound numbers, ``choices`` bound parsed text. ``required`` is ``True`` or a ``When``; ``either`` names a second variable
    that satisfies the requirement instead (``CRM_TOKEN`` or ``CRM_TOKEN_PARAM``). ``hint``
    is what the error message adds to say where the value comes from.
    """

    name: str
    doc: str
    parse: Callable[[str], Any] = str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    required: bool | When = False
    either: str | None = None
    hint: str = ""
    expect: str = ""
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    # --- reading -----------------------------------------------------------------------
    def read(self, env: Mapping[str, str] | None = None) -> Any:
        """The value in ``env`` (default ``os.environ``), parsed once per distinct text.

        For settings read at call time (a demo flips ``USER_SCHEMA_MODE`` without a restart);
        an unset one gives the default. Requirements are checked by ``load``, not here.
        """
        raw = (os.environ if env is None else env).get(self.name)
        try:
            return self._cache[raw]
        except KeyError:
            pass
        except TypeError:  # unhashable: not from an environment; parse without caching
            return self.parse_text(raw)
        value = self._cache[raw] = self.parse_text(raw)
        return value

    def require(self, env: Mapping[str, str] | None = None, *, owner: str | None = None) -> Any:
        """``read``, after checking that a required setting is there (``ConfigError`` if not)."""
        env = os.environ if env is None else env
        missing = self.missing(env)
        if missing:
            raise ConfigError(f"{owner}: {missing}" if owner else missing)
        return self.read(env)

    def parse_text(self, raw: str | None) -> Any:
        """``raw`` -> value; ``ConfigError`` naming the variable and the fix when it is wrong."""
        if raw is None or raw == "":
            return self.default
        try:
            value = self.parse(raw)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("not finite")
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ConfigError(self._problem(raw, str(exc) if self._custom_parse else "")) from None
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ConfigError(self._problem(raw))
        if self.choices and value not in self.choices:
            raise ConfigError(self._problem(raw))
        return value

    # --- describing ----------------------------------------------------------------------
    @property
    def _custom_parse(self) -> bool:
        return self.parse not in (int, float, str)

    def expects(self) -> str:
        """What a valid value looks like, e.g. ``an integer from 0 to 10``."""
        if self.expect:
            return self.expect
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kinds: dict[Callable[[str], Any], str] = {int: "an integer", float: "a number"}
        kind = kinds.get(self.parse, "")
        if kind and self.low is not None and self.high is not None:
            return f"{kind} from {_num(self.low)} to {_num(self.high)}"
        if kind and self.low is not None:
            return f"{kind} of at least {_num(self.low)}"
        return kind or "text"

    def _problem(self, raw: str, reason: str = "") -> str:
        what = reason or f"expected {self.expects()}"
        default = _num(self.default) if isinstance(self.default, float) else self.default
        fix = (
            f"unset it for the default {default}"
            if self.default is not None and self.required is False
            else f"set it in {self.hint or SERVERLESS_HINT}"
        )
        return f"{self.name}={raw!r}: {what} ({self.doc}); {fix}"

    def is_required(self, env: Mapping[str, str]) -> bool:
        return self.required is True or (isinstance(self.required, When) and self.required(env))

    def missing(self, env: Mapping[str, str]) -> str | None:
        """Why this setting is missing from ``env``, or ``None`` when it is there or optional."""
        if not self.is_required(env) or env.get(self.name) or (self.either and env.get(self.either)):
            return None
        names = f"{self.name} or {self.either}" if self.either else self.name
        where = f" ({self.hint})" if self.hint else f" ({SERVERLESS_HINT})"
        when = f" {self.required.doc}" if isinstance(self.required, When) else ""
        return f"{names} is not set{when}: {self.doc}; set it{where}"

    def required_doc(self) -> str:
        if isinstance(self.required, When):
            text = self.required.doc
        else:
            text = "yes" if self.required else ""
        if text and self.either:
            text += f" (or `{self.either}`)"
        return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def problems(declarations: Iterable[Setting], env: Mapping[str, str]) -> list[str]:
    """Every missing or invalid setting among ``declarations``, as messages naming the fix."""
    out: list[str] = []
    seen: set[str] = set()
    for s in declarations:
        if s.name in seen:
            continue
        seen.add(s.name)
        missing = s.missing(env)
        if missing:
            out.append(missing)
            continue
        try:
            s.parse_text(env.get(s.name))
        except ConfigError as exc:
            out.append(str(exc))
    return out


def raise_problems(found: Sequence[str], owner: str | None = None) -> None:
    """One ``ConfigError`` for all of ``found`` (nothing when it is empty)."""
    if not found:
        return
    prefix = f"{owner}: " if owner else ""
    if len(found) == 1:
        raise ConfigError(prefix + found[0])
    raise ConfigError(prefix + f"{len(found)} settings to fix:\n  - " + "\n  - ".join(found))


def load(
    declarations: Iterable[Setting], env: Mapping[str, str] | None = None, *, owner: str | None = None
) -> dict[str, Any]:
    """Check and parse ``declarations`` from ``env`` (default ``os.environ``) at cold start.

    Returns ``{name: value}`` (defaults filled in); raises one ``ConfigError`` listing every
    missing or invalid variable, each with its fix, prefixed by ``owner`` (e.g. the consumer).
    """
    env = os.environ if env is None else env
    declarations = list(declarations)
    raise_problems(problems(declarations, env), owner)
    return {s.name: s.parse_text(env.get(s.name)) for s in declarations}


# --- documentation ----------------------------------------------------------------------------
TABLE_START = "<!-- settings-table: generated from the SETTINGS declarations; scripts/settings_table.py -->"
TABLE_END = "<!-- /settings-table -->"


def markdown_table(groups: Iterable[tuple[str, Iterable[Setting]]]) -> str:
    """The settings table: one row per variable (first declaration wins), its readers joined."""
    rows: dict[str, tuple[Setting, list[str]]] = {}
    for reader, declarations in groups:
        for s in declarations:
            if s.name not in rows:
                rows[s.name] = (s, [])
            if reader not in rows[s.name][1]:
                rows[s.name][1].append(reader)
    lines = [
        "| variable | read by | required | default | accepts | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for name, (s, readers) in rows.items():
        default = "" if s.default is None else f"`{_num(s.default) if isinstance(s.default, float) else s.default}`"
        cells = [f"`{name}`", ", ".join(readers), s.required_doc(), default, s.expects(), s.doc]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def replace_table(text: str, table: str) -> str:
    """``text`` with the block between ``TABLE_START`` and ``TABLE_END`` replaced by ``table``."""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"no settings table markers ({TABLE_START} ... {TABLE_END}) in the text")
    return text[: start + len(TABLE_START)] + "\n" + table + "\n" + text[end:]
