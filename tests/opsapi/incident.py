"""A small schema-change incident on the embedded AWS, for the API and the page.

Real parts only: the users table's stream on moto, the mapping emulator (``local.esm``, which
writes the state file the API reads), one stream function per consumer built with
``stream_handler`` under that consumer's policy (so the real loop captures to the real failure
queue and writes the real ledger), and the v1 consumer code that raises ``KeyError`` on the new
schema. Each function loads this module fresh with its own environment (``CONSUMER``,
``FAILURE_POLICY``, ``SCHEMA``), as Lambda would.
"""
from __future__ import annotations

import os

import boto3

from consumers.registry import get_consumer


def handle_record(record) -> None:
    """The v1 code reads ``fullname`` (KeyError on firstname/lastname items) until SCHEMA=compat."""
    image = record.new_image or {}
    if os.environ.get("SCHEMA", "legacy") == "legacy":
        image["fullname"]


if os.environ.get("CONSUMER"):  # loaded as a function by the emulator
    from streamkit import stream_handler

    handler = stream_handler(os.environ["CONSUMER"], handle_record)


CONSUMERS = {"search-indexer": "dlq-capture", "slack-notifier": "soft-fail", "crm-sync": "hard-fail"}


class Incident:
    """The stack, the emulator and the users written so far."""

    def __init__(self, state_path, ledger_table: str):
        from local.esm import Emulator, MappingConfig
        from local.functions import FunctionConfig, FunctionRuntime

        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName="users", KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST",
                         StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        stream = ddb.describe_table(TableName="users")["Table"]["LatestStreamArn"]
        sqs = boto3.client("sqs")
        self.queues: dict[str, dict[str, str]] = {}
        functions, mappings = {}, []
        for name, policy in CONSUMERS.items():
            c = get_consumer(name)
            self.queues[name] = {kind: sqs.create_queue(QueueName=c.queue_name(kind))["QueueUrl"]
                                 for kind in ("parking", "failures")}
            fn = f"userstream-dev-{name}"
            env = {"CONSUMER": name, "FAILURE_POLICY": policy, "FAILURE_QUEUE_URL": self.queues[name]["failures"],
                   "LEDGER_TABLE": ledger_table, "SCHEMA": "legacy", "RETRY_BASE_DELAY_MS": "0"}
            functions[fn] = FunctionRuntime(FunctionConfig(fn, "tests/opsapi/incident.handler", env, timeout_s=60))
            mappings.append(MappingConfig(
                name=f"{name}-mapping", function=fn, stream_arn=stream, starting_position="TRIM_HORIZON",
                batch_size=25, report_batch_item_failures=True, bisect_on_error=policy == "hard-fail",
                max_retry_attempts=100 if policy == "hard-fail" else 10, max_record_age_s=86_400,
                filter_criteria={"Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}]} if policy == "soft-fail" else None))
        self.em = Emulator(mappings, functions, retry_backoff_s=0, state_path=state_path)
        self.users = 0

    def write(self, n: int, *, v2: bool) -> None:
        ddb = boto3.client("dynamodb")
        for _ in range(n):  # one writer thread: moto keeps sequence numbers unique
            i = self.users = self.users + 1
            item = {"user_id": {"S": f"u{i:04d}"}, "email": {"S": f"user{i}@example.com"}}
            if v2:
                item.update(firstname={"S": "Ada"}, lastname={"S": f"Number{i}"})
            else:
                item["fullname"] = {"S": f"Ada Number{i}"}
            ddb.put_item(TableName="users", Item=item)

    def run(self):
        return self.em.run_until_idle(stall_after=3)

    def fix(self):
        """The fix deployed: every function cold-starts with the compat code."""
        for fn in list(self.em.functions):
            self.em.redeploy(fn, {"SCHEMA": "compat"})
        return self.run()
