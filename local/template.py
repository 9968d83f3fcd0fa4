"""The packaged CloudFormation template, for the local runtime.

The preparation for moto lives in ``deploy.template`` (one implementation, shared with the
deployment tests): ``prepare_for_moto`` takes the ``AWS::Lambda::EventSourceMapping``
resources out (moto would run the functions through Docker on every stream write and empty
the shard) and returns their properties, so the emulator reads its settings from this same
template; each function's ``Code`` becomes an inline stub (the code runs in-process).
This module adds what a person running ``make demo`` needs: where the template is
(``LOCAL_TEMPLATE`` overrides), and packaging it, or saying how to get Node, when it is missing.
"""
from __future__ import annotations

import os
from pathlib import Path

from deploy.template import TemplateError, load_packaged_template

DEFAULT_TEMPLATE = "artifacts/cloudformation-template-update-stack.json"
# The package of each stream source (scripts/package.sh writes both; kinesis is serverless.yml's default).
SOURCE_TEMPLATES = {"kinesis": DEFAULT_TEMPLATE,
                    "dynamodb": "artifacts/dynamodb-source/cloudformation-template-update-stack.json"}
NODE_HINT = ("Node.js 20+ and npm are needed for `serverless package`: install them with your package manager "
             "(e.g. `sudo apt-get install nodejs npm`) or from https://nodejs.org")

__all__ = ["TemplateError", "ensure_packaged", "load_template", "template_path"]


def template_path(source: str = "kinesis") -> Path:
    return Path(os.environ.get("LOCAL_TEMPLATE") or SOURCE_TEMPLATES[source])


def ensure_packaged(root: str | os.PathLike, source: str = "kinesis") -> Path:
    """The template packaged for ``source``, running ``make package`` first when it is missing (needs Node)."""
    import shutil
    import subprocess
    import sys

    p = Path(root) / template_path(source)
    if p.exists():
        return p
    if shutil.which("node") is None:
        raise TemplateError(f"no packaged CloudFormation template at {p}. {NODE_HINT}, then run `make package`.")
    makefile = Path(root) / "Makefile"
    if not makefile.exists() or "\npackage:" not in makefile.read_text():
        raise TemplateError(f"no packaged CloudFormation template at {p}: run `serverless package` and copy "
                            ".serverless/cloudformation-template-update-stack.json there")
    print(f"{p} is missing: running `make package`...", file=sys.stderr, flush=True)
    proc = subprocess.run(["make", "package"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0 or not p.exists():
        raise TemplateError(f"`make package` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    return p


def load_template(path: str | os.PathLike | None = None) -> dict:
    """Read the packaged template, or explain how to produce it (and how to get Node)."""
    p = Path(path) if path else template_path()
    if not p.exists():
        import shutil

        how = "run `make package` (it runs `serverless package` and writes the template to artifacts/)"
        if shutil.which("node") is None:
            how = f"{NODE_HINT}, then {how}"
        raise TemplateError(f"no packaged CloudFormation template at {p}: {how}")
    return load_packaged_template(p)
