"""The packaged CloudFormation template, adapted for CloudFormation on moto.

``make package`` writes ``artifacts/cloudformation-template-update-stack.json``. moto can create
that stack after two changes, made by :func:`prepare_for_moto` and nothing else:

* ``AWS::Lambda::EventSourceMapping`` resources are taken out and returned with their
  properties. moto would try to run the functions through Docker on every stream write and
  empty the shard (see shared/LOCAL-AWS-NOTES.md), so a local runtime emulates the mappings
  from these settings, and tests assert them from the template. ``DependsOn`` entries,
  outputs and alarms (on the mapping's metrics; moto skips alarms anyway) naming a removed
  mapping are dropped with it.
* each ``AWS::Lambda::Function``'s ``Code`` (an S3 object in the deployment bucket, which is
  never uploaded offline) becomes a one-line inline stub: locally the handlers run in-process.

Resource types moto accepts but silently does not create (:data:`MOTO_SKIPS`: alarms, HTTP API,
bucket policies) stay in the template; assert them from the template, not from moto.

Usage::

    from deploy.template import load_packaged_template, prepare_for_moto
    stack_template, mappings = prepare_for_moto(load_packaged_template())
    boto3.client("cloudformation").create_stack(StackName="userstream-dev",
        TemplateBody=json.dumps(stack_template), Capabilities=["CAPABILITY_IAM"])
    # mappings: {logical id: EventSourceMapping Properties (EventSourceArn, BatchSize, ...)}
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGED_TEMPLATE = ROOT / "artifacts" / "cloudformation-template-update-stack.json"
ESM_TYPE = "AWS::Lambda::EventSourceMapping"
ALARM_TYPE = "AWS::CloudWatch::Alarm"
LOCAL_CODE = {"ZipFile": "# local stand-in: the handler runs in-process from the working tree\n"}
# Types CloudFormation on moto 5.2.x accepts but does not create (it lists them without an id).
MOTO_SKIPS = ("AWS::CloudWatch::Alarm", "AWS::ApiGatewayV2::", "AWS::S3::BucketPolicy")


class TemplateError(RuntimeError):
    """The packaged template is missing or unusable; the message says what to do."""


def load_packaged_template(path: str | Path | None = None) -> dict:
    """Read the packaged template, or fail saying how to produce it (``make package``)."""
    p = Path(path) if path else PACKAGED_TEMPLATE
    if not p.exists():
        raise TemplateError(f"no packaged CloudFormation template at {p}: run `make package` "
                            "(npm ci + `serverless package --package artifacts`, offline)")
    try:
        template = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{p} is not valid JSON ({exc}): re-run `make package`") from None
    if not isinstance(template.get("Resources"), dict):
        raise TemplateError(f"{p} has no Resources: is it a CloudFormation template?")
    return template


def _names(value: Any, names: set[str]) -> bool:
    """Does ``value`` (any template fragment) reference one of ``names``?"""
    text = json.dumps(value)
    return any(f'"{n}"' in text or f"${{{n}" in text for n in names)


def prepare_for_moto(template: dict) -> tuple[dict, dict[str, dict]]:
    """(template moto can create, {mapping logical id: its Properties}); ``template`` is not changed.

    Why: moto must never own a mapping on a stream we read, and cannot fetch function code from
    a deployment bucket that offline packaging never uploads.
    """
    if not isinstance(template.get("Resources"), dict):
        raise TemplateError("not a CloudFormation template: no Resources")
    out = copy.deepcopy(template)
    resources = out["Resources"]
    mappings = {k: r.get("Properties", {}) for k, r in resources.items() if r.get("Type") == ESM_TYPE}
    for logical_id in mappings:
        del resources[logical_id]
    gone = set(mappings)
    for res in resources.values():
        deps = res.get("DependsOn")
        if isinstance(deps, list):
            res["DependsOn"] = [d for d in deps if d not in gone]
            if not res["DependsOn"]:
                del res["DependsOn"]
        elif isinstance(deps, str) and deps in gone:
            del res["DependsOn"]
        if res.get("Type") == "AWS::Lambda::Function":
            res.setdefault("Properties", {})["Code"] = dict(LOCAL_CODE)
    outputs = out.get("Outputs") or {}
    for key in [k for k, v in outputs.items() if _names(v, gone)]:
        del outputs[key]
    for key in [k for k, r in resources.items() if r.get("Type") == ALARM_TYPE and _names(r, gone)]:
        del resources[key]
    leftover = [k for k, r in resources.items() if _names(r, gone)]
    if leftover:
        raise TemplateError(f"resources {leftover} reference removed event-source mappings; "
                            "extend deploy.template.prepare_for_moto for them")
    return out, copy.deepcopy(mappings)


def mapping_function(properties: dict) -> str:
    """The function logical id a mapping's ``FunctionName`` (``Ref``/``Fn::GetAtt``) names."""
    fn = properties.get("FunctionName")
    if isinstance(fn, dict) and "Ref" in fn:
        return fn["Ref"]
    if isinstance(fn, dict) and "Fn::GetAtt" in fn:
        target = fn["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else target.split(".", 1)[0]
    raise TemplateError(f"EventSourceMapping FunctionName {fn!r}: expected Ref or Fn::GetAtt of a function")
