"""The packaged CloudFormation template, prepared for CloudFormation on moto.

``serverless package`` writes ``.serverless/cloudformation-template-update-stack.json``;
``make package`` copies it to ``artifacts/``. For moto, two changes, nothing else:

* the ``AWS::Lambda::EventSourceMapping`` resources are taken out (moto would try to run
  the functions through Docker on every stream write and empty the shard) and returned
  with their properties, so the emulator reads its settings from this same template;
* each function's ``Code`` (an S3 artifact that is never uploaded locally) becomes a
  one-line inline stub: locally, the code runs in-process from the working tree.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "artifacts/cloudformation-template-update-stack.json"
ESM_TYPE = "AWS::Lambda::EventSourceMapping"
LOCAL_CODE = {"ZipFile": "# local runtime: the handler runs in-process from the working tree\n"}


class TemplateError(RuntimeError):
    """The packaged template is missing or cannot be used; the message says what to do."""


def template_path() -> Path:
    return Path(os.environ.get("LOCAL_TEMPLATE") or DEFAULT_TEMPLATE)


NODE_HINT = ("Node.js 18+ is needed for `serverless package`: install it with your package manager "
             "(e.g. `sudo apt-get install nodejs npm`) or from https://nodejs.org")


def ensure_packaged(root: str | os.PathLike) -> Path:
    """The default template, running ``make package`` first when it is missing (needs Node)."""
    import shutil
    import subprocess
    import sys

    p = Path(root) / template_path()
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
    """Read the packaged template, or explain how to produce it."""
    p = Path(path) if path else template_path()
    if not p.exists():
        import shutil

        how = "run `make package` (it runs `serverless package` and copies the template to artifacts/)"
        if shutil.which("node") is None:
            how = f"{NODE_HINT}, then {how}"
        raise TemplateError(f"no packaged CloudFormation template at {p}: {how}")
    try:
        template = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{p} is not valid JSON ({exc}); re-run `make package`") from None
    if not isinstance(template.get("Resources"), dict):
        raise TemplateError(f"{p} has no Resources: is it a CloudFormation template?")
    return template


def strip_event_source_mappings(template: dict) -> tuple[dict, dict[str, dict]]:
    """(template for moto, {logical id: EventSourceMapping properties}); the input is not changed."""
    out = copy.deepcopy(template)
    mappings: dict[str, dict] = {}
    for logical_id, res in list(out["Resources"].items()):
        if res.get("Type") == ESM_TYPE:
            mappings[logical_id] = res.get("Properties", {})
            del out["Resources"][logical_id]
    for res in out["Resources"].values():
        deps = res.get("DependsOn")
        if isinstance(deps, list):
            res["DependsOn"] = [d for d in deps if d not in mappings]
        elif isinstance(deps, str) and deps in mappings:
            del res["DependsOn"]
        if res.get("Type") == "AWS::Lambda::Function":
            res.setdefault("Properties", {})["Code"] = dict(LOCAL_CODE)
    outputs = out.get("Outputs") or {}
    for key in [k for k, v in outputs.items() if any(f'"{n}"' in json.dumps(v) for n in mappings)]:
        del outputs[key]  # an output naming a mapping would not resolve without it
    return out, mappings


def function_logical_id(function_name: Any) -> str:
    """``{"Ref": X}`` / ``{"Fn::GetAtt": [X, "Arn"]}`` -> X (what serverless writes)."""
    if isinstance(function_name, dict):
        if "Ref" in function_name:
            return function_name["Ref"]
        if "Fn::GetAtt" in function_name:
            return function_name["Fn::GetAtt"][0]
    raise TemplateError(f"EventSourceMapping FunctionName {function_name!r}: expected Ref or Fn::GetAtt of a function")
