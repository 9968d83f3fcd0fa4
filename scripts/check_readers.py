#!/usr/bin/env python3
"""Reader budget: warn when more than 2 event source mappings read one DynamoDB stream.

DynamoDB Streams allows about 2 concurrent readers per shard (1 on global tables); a third
direct reader risks read throttling and a climbing IteratorAge. Usage: check_readers.py TEMPLATE
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

MAX_READERS = 2


def readers_per_stream(template: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for logical, res in template.get("Resources", {}).items():
        if res.get("Type") == "AWS::Lambda::EventSourceMapping":
            arn = json.dumps(res["Properties"].get("EventSourceArn"), sort_keys=True)
            if "dynamodb" in arn.lower() or "StreamArn" in arn:
                out[arn].append(logical)
    return out


def main(path: str) -> int:
    with open(path) as f:
        template = json.load(f)
    for arn, mappings in readers_per_stream(template).items():
        if len(mappings) > MAX_READERS:
            print(
                f"WARNING: {len(mappings)} event source mappings read one stream ({arn}): {', '.join(mappings)}. "
                f"DynamoDB Streams supports at most {MAX_READERS} readers per shard (1 on global tables); more risk "
                "read throttling and a climbing IteratorAge. Consider the single-reader fan-out option (one reader "
                "forwarding to EventBridge, SNS or Kinesis for the consumers), and watch the IteratorAge alarms."
            )
        else:
            print(f"reader budget ok: {len(mappings)} mapping(s) on {arn}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1]))
