"""Embedded AWS: moto in server mode on a free loopback port, and the stack deployed on it.

The stack comes from the packaged template (``serverless package``), created through
CloudFormation on moto, so what runs locally is what ``serverless deploy`` would create.
On the Kinesis source, two things moto's CloudFormation leaves out are made here from the
same template: each ``AWS::Kinesis::StreamConsumer`` (registered with RegisterStreamConsumer,
so a mapping's EventSourceArn is a real consumer ARN), and the table's publishing to Kinesis
(its ``KinesisStreamSpecification`` becomes a ``local.bridge.KinesisBridge``). On either
source, a bucket's notifications to a queue (a hard-fail consumer's on-failure objects) are
set here too: moto's CloudFormation drops them.
The functions' settings (handler, timeout, environment: queue URLs, table names) are read
back from the Lambda functions moto created (``GetFunctionConfiguration``), not from a
second copy of the configuration. The event-source mappings' settings come from the same
template (see ``local.template``). Local overrides exist only for what points at local
stand-ins: ``SEARCH_URL``, ``SLACK_WEBHOOK_URL``, ``CRM_BASE_URL``, ``CRM_TOKEN``.
"""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consumers.registry import stack_prefix
from deploy.template import mapping_function, prepare_for_moto

from .esm import MappingConfig
from .functions import FunctionConfig
from .shards import stream_of_consumer
from .template import TemplateError, load_template

LOCAL_OVERRIDE_KEYS = ("SEARCH_URL", "SLACK_WEBHOOK_URL", "CRM_BASE_URL", "CRM_TOKEN")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedAws:
    """A ThreadedMotoServer in this process; ``start()`` points boto3 (and child processes) at it."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}

    def start(self, *, export_endpoint: bool = True) -> EmbeddedAws:
        """Start the server. ``export_endpoint=False`` leaves ``AWS_ENDPOINT_URL`` alone, for a
        caller that points only some work at it (the test suite's ``aws`` fixture)."""
        from moto.server import ThreadedMotoServer

        from .moto_server import patch

        patch()  # moto's concurrent SQS deletes can lose one another (local.moto_server)
        keys = [*AWS_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"]
        self._saved_env = {k: os.environ.get(k) for k in keys}
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(var, None)  # never reach a real account from the local runtime
        os.environ.update(AWS_ENV)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        import logging
        import warnings

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        # CloudFormation on moto skips alarms, HTTP APIs and bucket policies (the local runtime
        # does not need them; deploy.template.MOTO_SKIPS): say nothing about each one
        logging.getLogger("moto").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
        self._server.start()
        if export_endpoint:
            os.environ["AWS_ENDPOINT_URL"] = self.url
        return self

    def reset(self) -> None:
        """Forget every resource (moto's reset API): a fresh account at the same endpoint."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=30).read()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            for k, v in self._saved_env.items():  # leave the process environment as it was
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def __enter__(self) -> EmbeddedAws:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class Deployment:
    """The deployed stack as the local runtime needs it."""

    stack_name: str
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)
    functions: dict[str, FunctionConfig]  # by deployed function name
    mappings: list[MappingConfig]
    outputs: dict[str, str] = field(default_factory=dict)
    kinesis_destinations: list[tuple[str, str]] = field(default_factory=list)  # (table, Kinesis stream ARN)

    @property
    def source(self) -> str:
        """``kinesis`` when the mappings read Kinesis (Kinesis Data Streams for DynamoDB), else ``dynamodb``."""
        return "kinesis" if any(m.source == "kinesis" for m in self.mappings) else "dynamodb"

    def bridges(self) -> list:
        """One ``KinesisBridge`` per table that publishes to Kinesis (moto does not: we do)."""
        from .bridge import KinesisBridge

        return [KinesisBridge.for_table(table, arn) for table, arn in self.kinesis_destinations]

    def function_for(self, suffix: str) -> FunctionConfig:
        """The function whose deployed name ends with ``suffix`` (``crm-sync`` -> userstream-dev-crm-sync)."""
        hits = [f for name, f in self.functions.items() if name == suffix or name.endswith("-" + suffix)]
        if len(hits) != 1:
            raise KeyError(f"no single function named *{suffix} among {sorted(self.functions)}")
        return hits[0]

    def operator_env(self, endpoint_url: str) -> dict[str, str]:
        """What ``reprocess.py`` (a drain, a backfill, a rewind) needs in another shell: the
        reprocess function's settings as deployed, the endpoint and the local credentials."""
        return {**AWS_ENV, **self.function_for("reprocess").environment, "AWS_ENDPOINT_URL": endpoint_url}

    @property
    def table_name(self) -> str:
        tables = [p for t, p in self.resources.values() if t == "AWS::DynamoDB::Table"
                  and (p.endswith("users") or "users" in p.lower())]
        if not tables:
            raise TemplateError("the stack has no users table")
        return tables[0]


class _Resolver:
    """Resolve the few intrinsics a mapping's properties use, against the deployed stack."""

    def __init__(self, resources: dict[str, tuple[str, str]], template: dict | None = None):
        import boto3

        self.resources = resources
        self.template_resources = (template or {}).get("Resources") or {}
        self.pseudo = {"AWS::Region": os.environ.get("AWS_REGION", "us-east-1"), "AWS::AccountId": "123456789012",
                       "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}
        self.ddb, self.sqs, self.lam = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("lambda")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str) or value is None:
            return value
        if isinstance(value, dict) and "Ref" in value:
            if value["Ref"] in self.pseudo:
                return self.pseudo[value["Ref"]]
            if self._is_stream_consumer(value["Ref"]):  # Ref of a StreamConsumer: its ARN
                return self._stream_consumer_arn(value["Ref"])
            return self._physical(value["Ref"])[1]
        if isinstance(value, dict) and "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(str(self(p)) for p in parts)
        if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            import re

            return re.sub(r"\$\{([^}]+)\}", lambda m: str(self(
                {"Fn::GetAtt": m.group(1).split(".", 1)} if "." in m.group(1) and not m.group(1).startswith("AWS::")
                else {"Ref": m.group(1)})), value["Fn::Sub"])
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            logical, attr = target if isinstance(target, list) else target.split(".", 1)
            rtype, pid = self._physical(logical)
            if rtype == "AWS::DynamoDB::Table" and attr in ("StreamArn", "LatestStreamArn"):
                return self.ddb.describe_table(TableName=pid)["Table"]["LatestStreamArn"]
            if rtype == "AWS::SQS::Queue" and attr == "Arn":
                return self.sqs.get_queue_attributes(QueueUrl=pid, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            if rtype == "AWS::Lambda::Function" and attr == "Arn":
                return self.lam.get_function_configuration(FunctionName=pid)["FunctionArn"]
            if rtype == "AWS::SNS::Topic":
                return pid
            if rtype == "AWS::Kinesis::Stream" and attr == "Arn":
                import boto3

                return boto3.client("kinesis").describe_stream_summary(StreamName=pid)["StreamDescriptionSummary"]["StreamARN"]
        raise TemplateError(f"the local runtime cannot resolve {json.dumps(value)} in an event-source mapping")

    def _is_stream_consumer(self, logical: str) -> bool:
        return (self.template_resources.get(logical) or {}).get("Type") == "AWS::Kinesis::StreamConsumer"

    def _stream_consumer_arn(self, logical: str) -> str:
        """moto's CloudFormation has no StreamConsumer: register it (once) as the template says."""
        import boto3

        props = self.template_resources[logical].get("Properties") or {}
        stream_arn, name = self(props.get("StreamARN")), props.get("ConsumerName")
        kinesis = boto3.client("kinesis")
        for consumer in kinesis.list_stream_consumers(StreamARN=stream_arn).get("Consumers", []):
            if consumer["ConsumerName"] == name:
                return consumer["ConsumerARN"]
        return kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)["Consumer"]["ConsumerARN"]

    def _physical(self, logical: str) -> tuple[str, str]:
        if logical not in self.resources:
            raise TemplateError(f"template references {logical!r}, which the stack does not contain")
        return self.resources[logical]


def deploy(
    template: dict | None = None,
    *,
    stack_name: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Deployment:
    """Create the stack on the embedded AWS and describe it for the emulator."""
    import boto3

    template = template if template is not None else load_template()
    moto_template, _ = prepare_for_moto(template)
    stack_name = stack_name or stack_prefix()
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(moto_template),
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    _notify_queues(template, stack_name)
    return describe(template, stack_name=stack_name, overrides=overrides)


def _notify_queues(template: dict, stack_name: str) -> None:
    """moto's CloudFormation drops a bucket's ``NotificationConfiguration``: set it as the
    template says, so a hard-fail consumer's on-failure objects reach its failure queue (and
    the reprocess worker) as on AWS."""
    import boto3

    from streamkit import onfailure

    cfn = boto3.client("cloudformation")
    resources = {r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"])
                 for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
                 if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
    resolve = _Resolver(resources, template)
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    for logical, res in template.get("Resources", {}).items():
        notify = ((res.get("Properties") or {}).get("NotificationConfiguration") or {}).get("QueueConfigurations")
        if res.get("Type") != "AWS::S3::Bucket" or not notify or logical not in resources:
            continue
        queue_arns = [resolve(n["Queue"]) for n in notify]
        s3.put_bucket_notification_configuration(Bucket=resources[logical][1], NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": a, "Events": [n["Event"]]} for a, n in zip(queue_arns, notify, strict=True)]})
        # S3 tests the configuration with an "s3:TestEvent" message. On AWS the consumer's first
        # drain deletes it (docs/deploy.md); here it goes at once, so a fresh stack's queues are empty.
        for arn in set(queue_arns):
            url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
                if onfailure.is_test_event(m["Body"]):
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                else:
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)


def describe(
    template: dict | None = None,
    *,
    stack_name: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Deployment:
    """Describe an already deployed stack (functions from Lambda, mappings from the template)."""
    import boto3

    template = template if template is not None else load_template()
    _, esm_props = prepare_for_moto(template)
    stack_name = stack_name or stack_prefix()
    cfn = boto3.client("cloudformation")
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except cfn.exceptions.ClientError as exc:
        raise TemplateError(f"no stack {stack_name!r} at {os.environ.get('AWS_ENDPOINT_URL')}: {exc}") from None
    if stack["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                   for e in events if "FAILED" in e["ResourceStatus"]]
        raise TemplateError(f"stack {stack_name} is {stack['StackStatus']}: {'; '.join(reasons) or 'no reason given'}")
    resources = {
        r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"])
        for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        # moto lists resources it skipped (BucketPolicy, ...) and Lambda versions without ids
        if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
    }
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}

    lam = boto3.client("lambda")
    functions: dict[str, FunctionConfig] = {}
    for rtype, pid in resources.values():
        if rtype != "AWS::Lambda::Function":
            continue
        conf = lam.get_function_configuration(FunctionName=pid)
        env = dict((conf.get("Environment") or {}).get("Variables") or {})
        functions[conf["FunctionName"]] = FunctionConfig(
            name=conf["FunctionName"],
            handler=conf["Handler"],
            environment=apply_local_overrides(env, overrides or {}),
            timeout_s=float(conf.get("Timeout") or 6),
            arn=conf["FunctionArn"],
        )

    resolve = _Resolver(resources, template)
    mappings = []
    for logical_id, props in sorted(esm_props.items()):
        ignored = MappingConfig.unsupported(props)
        if ignored:
            import sys

            print(f"local: mapping {logical_id}: not emulated: {', '.join(ignored)}", file=sys.stderr)
        fn_logical = mapping_function(props)
        on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        source_arn = resolve(props.get("EventSourceArn"))
        kinesis = ":kinesis:" in source_arn
        mappings.append(MappingConfig.from_properties(
            logical_id,
            props,
            function=resolve._physical(fn_logical)[1],
            stream_arn=stream_of_consumer(source_arn) if kinesis else source_arn,
            on_failure_arn=resolve(on_failure),
            source="kinesis" if kinesis else "dynamodb",
            consumer_arn=source_arn if kinesis and "/consumer/" in source_arn else None,
        ))
    destinations = []
    for logical_id, res in template.get("Resources", {}).items():
        if res.get("Type") != "AWS::DynamoDB::Table":
            continue
        spec = (res.get("Properties") or {}).get("KinesisStreamSpecification")
        if spec and logical_id in resources:
            destinations.append((resources[logical_id][1], resolve(spec.get("StreamArn"))))
    return Deployment(stack_name, resources, functions, mappings, outputs, destinations)


def apply_local_overrides(env: dict[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Point a function at local stand-ins; only the stand-in settings may be overridden."""
    unknown = sorted(set(overrides) - set(LOCAL_OVERRIDE_KEYS))
    if unknown:
        raise ValueError(f"only {', '.join(LOCAL_OVERRIDE_KEYS)} may be overridden locally, not {unknown}")
    out = dict(env)
    for key, value in overrides.items():
        out[key] = value
        out.pop(f"{key}_PARAM", None)  # the plain local value replaces the SSM parameter name
    return out
