#!/usr/bin/env python3
"""README's settings table, generated from the components' ``SETTINGS`` declarations.

    python scripts/settings_table.py           # print the table
    python scripts/settings_table.py --write   # rewrite README.md between the table markers
    python scripts/settings_table.py --check   # exit 1 when README.md is out of date

``tests/streamkit/test_settings.py`` runs the check. A component with settings of its own adds
its group to ``groups()`` below.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def groups() -> list[tuple[str, tuple]]:
    """(reader, declarations) for every component, in the table's order."""
    from consumers.registry import CONSUMERS
    from reprocess.options import JOB_SETTINGS, LAMBDA_ONLY_SETTINGS
    from reprocess.options import SETTINGS as WORKER_SETTINGS
    from streamkit.handler import framework_settings

    return [*framework_settings(), *((c.name, c.settings()) for c in CONSUMERS.values()),
            ("reprocess worker", WORKER_SETTINGS), ("reprocess Lambda", LAMBDA_ONLY_SETTINGS),
            ("reprocess backfill and rewind", JOB_SETTINGS)]


def table() -> str:
    from streamkit.settings import markdown_table

    return markdown_table(groups())


def updated_readme(text: str) -> str:
    from streamkit.settings import replace_table

    return replace_table(text, table())


def main(argv: list[str]) -> int:
    if "--write" in argv or "--check" in argv:
        text = README.read_text()
        new = updated_readme(text)
        if "--check" in argv:
            if new != text:
                print("README.md's settings table is out of date: run python scripts/settings_table.py --write")
                return 1
            return 0
        README.write_text(new)
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
