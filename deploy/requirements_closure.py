#!/usr/bin/env python3
"""Which installed distributions each function's package must hold, for the Lambda platform.

serverless-python-requirements installs requirements.txt once (one resolution, one cache) and
injects all of it into every function's zip. Each function declares in serverless.yml the
distributions its own code imports (``requirements:``); this module takes the closure of those
over the installed ``Requires-Dist`` metadata, with environment markers evaluated for the
Lambda runtime (Linux, the function architecture, Python 3.12) rather than for the machine
that packages, and lists the files of every other distribution so the plugin
(plugins/stream-consumers/packages.js) can drop them from that function's zip.

Usage (the plugin runs it at package time; never shipped)::

    python deploy/requirements_closure.py REQUIREMENTS_DIR < spec.json > plan.json
    spec: {"python": "3.12", "architecture": "arm64", "provided": ["boto3", ...],
           "functions": {"crm-sync": ["aws-lambda-powertools", "structlog", "httpx"], ...}}
    plan: {"functions": {"crm-sync": {"keep": ["anyio", ...], "drop": ["flask/app.py", ...]}},
           "notes": [...]}

Exit status 2, with the fix in the message, when a function declares a distribution that
is not installed (a typo, or missing from requirements.txt).
"""
from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable
from importlib.metadata import Distribution, distributions
from pathlib import PurePosixPath

try:
    from packaging.requirements import Requirement
except ImportError:  # every pip vendors it; a bare Python 3.12 has pip
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

LAMBDA_MACHINE = {"arm64": "aarch64", "x86_64": "x86_64"}


class ClosureError(ValueError):
    """A declared requirement cannot be satisfied; the message names the fix."""


def canonical(name: str) -> str:
    """PEP 503 normalized name: ``Flask`` == ``flask``, ``slack_sdk`` == ``slack-sdk``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lambda_environment(python: str, architecture: str) -> dict[str, str]:
    """PEP 508 marker variables of the Lambda runtime (not of the machine that packages)."""
    if architecture not in LAMBDA_MACHINE:
        raise ClosureError(f"architecture {architecture!r}: use arm64 or x86_64")
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": LAMBDA_MACHINE[architecture],
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "python_version": python,
        "sys_platform": "linux",
    }


def _applies(req: Requirement, env: dict[str, str], extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in (list(extras) or [""]))


def record_paths(dist: Distribution) -> list[str]:
    """The distribution's files as paths inside the zip, from its RECORD.

    Read directly: ``Distribution.files`` skips entries that do not exist where it looks, and
    pip -t records console scripts as ``../../bin/x`` while it puts them in ``<target>/bin``.
    """
    out = []
    for row in csv.reader((dist.read_text("RECORD") or "").splitlines()):
        if not row or not row[0]:
            continue
        parts = PurePosixPath(row[0].replace("\\", "/")).parts
        if ".." in parts:
            if "bin" not in parts:
                continue
            parts = parts[parts.index("bin"):]
        if "__pycache__" in parts or parts[-1].endswith((".pyc", ".pyo")):
            continue  # slim removes these before injection
        out.append("/".join(parts))
    return out


def plan(requirements_dir: str, spec: dict) -> dict:
    """The keep/drop plan for every function in ``spec`` (see the module docstring)."""
    env = lambda_environment(str(spec.get("python", "3.12")), str(spec.get("architecture", "x86_64")))
    provided = {canonical(n) for n in spec.get("provided", [])}
    installed: dict[str, Distribution] = {}
    for dist in distributions(path=[requirements_dir]):
        installed.setdefault(canonical(dist.metadata["Name"]), dist)
    notes: list[str] = []
    out: dict[str, dict] = {}
    for function, declared in sorted((spec.get("functions") or {}).items()):
        if not isinstance(declared, list) or not declared:
            raise ClosureError(f"functions.{function}.requirements: list the distributions its code imports "
                               "(names from requirements.txt), e.g. [aws-lambda-powertools, structlog]")
        keep: set[str] = set()
        queue: list[tuple[str, frozenset[str]]] = []
        for text in declared:
            req = Requirement(text)
            name = canonical(req.name)
            if name not in installed and name not in provided:
                raise ClosureError(f"functions.{function}.requirements names {text!r}, which is not installed "
                                   f"from requirements.txt: add it there (pinned) or fix the name")
            queue.append((name, frozenset(req.extras)))
        seen: set[tuple[str, frozenset[str]]] = set()
        while queue:
            name, extras = queue.pop()
            if (name, extras) in seen or name in provided:
                continue
            seen.add((name, extras))
            dist = installed.get(name)
            if dist is None:
                notes.append(f"{function}: {name} is required but not installed (a marker pip evaluated "
                             "differently?); it is not in the package")
                continue
            keep.add(name)
            for text in dist.requires or []:
                req = Requirement(text)
                if _applies(req, env, extras):
                    queue.append((canonical(req.name), frozenset(req.extras)))
        drop: set[str] = set()
        for name, dist in installed.items():
            if name in keep:
                continue
            drop.update(record_paths(dist))
        out[function] = {"keep": sorted(keep), "drop": sorted(drop)}
    return {"functions": out, "notes": sorted(set(notes))}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        result = plan(argv[1], json.load(sys.stdin))
    except (ClosureError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
