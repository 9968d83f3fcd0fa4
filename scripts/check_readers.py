#!/usr/bin/env python3
"""Reader budget: fail when more than two readers would share one DynamoDB stream.

DynamoDB Streams supports about two concurrent readers per shard (one on global tables):
Lambda polls each event source mapping several times a second against a per-shard GetRecords
limit, so a third reader throttles the others and IteratorAge climbs for no visible reason.
A reader is every event source mapping on the stream, and every function whose role may read
it (``dynamodb:GetRecords`` on the stream ARN) without a mapping on it: the reprocess worker
reading an on-failure range counts.

The way out is Kinesis Data Streams for DynamoDB (``--param streamSource=kinesis``, the default
in serverless.yml): the table publishes to a Kinesis stream and each consumer reads it
through its own enhanced fan-out consumer. The only way past this check on DynamoDB Streams is
an explicit acknowledgement: ``--param dynamodbStreamReadersAccepted=<N>`` (docs/deploy.md).

Usage: check_readers.py TEMPLATE [--accept N]
  exit 0: every DynamoDB stream within budget (or within the accepted number)
  exit 1: a stream over budget (the message says why and how to switch)
  exit 2: bad usage or an unreadable template
The Serverless plugin (plugins/stream-consumers/source.js) runs it on the compiled template,
so ``serverless package`` fails; scripts/package.sh runs it again on what was written.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

MAX_READERS = 2
READ_ACTIONS = ("dynamodb:GetRecords", "dynamodb:GetShardIterator")
ACCEPT_PARAM = "dynamodbStreamReadersAccepted"


@dataclass
class StreamReaders:
    stream: str  # the stream ARN as the template writes it (a literal or an intrinsic, as JSON)
    mappings: list[str] = field(default_factory=list)  # EventSourceMapping logical ids
    functions: list[str] = field(default_factory=list)  # functions reading it by role, without a mapping

    @property
    def count(self) -> int:
        return len(self.mappings) + len(self.functions)

    def describe(self) -> str:
        parts = [f"mapping {m}" for m in self.mappings] + [f"function {f} (its role reads the stream)"
                                                            for f in self.functions]
        return ", ".join(parts)


def _key(value) -> str:
    return json.dumps(value, sort_keys=True)


def is_dynamodb_stream(arn) -> bool:
    """A DynamoDB stream ARN: ``arn:...:dynamodb:...:table/T/stream/...`` or ``GetAtt [Table, StreamArn]``."""
    if isinstance(arn, str):
        return ":dynamodb:" in arn and "/stream/" in arn
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        attr = target[1] if isinstance(target, list) else str(target).split(".", 1)[-1]
        return attr in ("StreamArn", "LatestStreamArn")
    return False


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def readers_per_stream(template: dict) -> dict[str, StreamReaders]:
    """Every DynamoDB stream the template reads, with its readers."""
    resources = template.get("Resources") or {}
    out: dict[str, StreamReaders] = {}

    def entry(arn) -> StreamReaders:
        k = _key(arn)
        if k not in out:
            out[k] = StreamReaders(arn if isinstance(arn, str) else k)
        return out[k]

    mapped: dict[str, set[str]] = {}  # stream key -> function logical ids with a mapping on it
    for logical, res in resources.items():
        if res.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        props = res.get("Properties") or {}
        arn = props.get("EventSourceArn")
        if is_dynamodb_stream(arn):
            entry(arn).mappings.append(logical)
            mapped.setdefault(_key(arn), set()).add(_function_id(props.get("FunctionName")))

    roles_reading: dict[str, set[str]] = {}  # role logical id -> stream keys its policies read
    for logical, res in resources.items():
        if res.get("Type") != "AWS::IAM::Role":
            continue
        for policy in (res.get("Properties") or {}).get("Policies") or []:
            for st in (policy.get("PolicyDocument") or {}).get("Statement") or []:
                actions = _as_list(st.get("Action"))
                if st.get("Effect") != "Allow" or not any(a in READ_ACTIONS or a == "dynamodb:*" for a in actions):
                    continue
                for arn in _as_list(st.get("Resource")):
                    if is_dynamodb_stream(arn):
                        roles_reading.setdefault(logical, set()).add(_key(arn))
                        entry(arn)
    for logical, res in resources.items():
        if res.get("Type") != "AWS::Lambda::Function":
            continue
        role = _function_id((res.get("Properties") or {}).get("Role"))
        for stream in roles_reading.get(role, ()):
            if logical not in mapped.get(stream, set()):
                out[stream].functions.append(logical)
    return out


def _function_id(value) -> str:
    """``{"Ref": X}`` / ``{"Fn::GetAtt": [X, "Arn"]}`` -> X (a literal stays as it is)."""
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
    return str(value)


def over_budget(template: dict, accept: int | None = None) -> list[str]:
    """One message per DynamoDB stream with more readers than allowed (``accept``: the
    acknowledged number, else ``MAX_READERS``)."""
    limit = MAX_READERS if accept is None else max(MAX_READERS, accept)
    problems = []
    for readers in readers_per_stream(template).values():
        if readers.count <= limit:
            continue
        problems.append(
            f"{readers.count} readers would share the DynamoDB stream {readers.stream}: {readers.describe()}. "
            f"DynamoDB Streams supports at most {MAX_READERS} readers per shard (1 on global tables); more "
            "throttle each other's GetRecords calls and IteratorAge climbs for no visible reason. "
            "Switch to Kinesis Data Streams for DynamoDB, where each consumer reads through its own enhanced "
            "fan-out consumer: --param streamSource=kinesis (the default in serverless.yml). To stay on "
            f"DynamoDB Streams knowingly, acknowledge the risk with --param {ACCEPT_PARAM}={readers.count} "
            "(docs/deploy.md, 'Reader budget')."
        )
    return problems


def main(argv: list[str]) -> int:
    args = list(argv)
    accept = None
    if "--accept" in args:
        i = args.index("--accept")
        try:
            accept = int(args[i + 1]) if args[i + 1] != "" else None
        except (IndexError, ValueError):
            print(f"--accept needs a number of readers ({ACCEPT_PARAM})", file=sys.stderr)
            return 2
        del args[i:i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(args[0]) as f:
            template = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"cannot read the template {args[0]}: {exc}", file=sys.stderr)
        return 2
    problems = over_budget(template, accept)
    for readers in readers_per_stream(template).values():
        if readers.count <= MAX_READERS:
            print(f"reader budget ok: {readers.count} reader(s) on the DynamoDB stream {readers.stream}")
        elif not problems:
            print(f"reader budget exceeded BY ACKNOWLEDGEMENT ({ACCEPT_PARAM}={accept}): {readers.count} readers on "
                  f"the DynamoDB stream {readers.stream}: {readers.describe()}; watch the IteratorAge alarms")
    if not readers_per_stream(template):
        print("reader budget ok: no DynamoDB stream is read (Kinesis Data Streams for DynamoDB)")
    for problem in problems:
        print(f"ERROR: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
