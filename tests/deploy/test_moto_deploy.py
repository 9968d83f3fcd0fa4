"""Smoke test: the packaged template deploys through CloudFormation on moto.

The template goes through ``deploy.template.prepare_for_moto`` (the same function the local
runtime can use): event-source mappings are taken out (moto would try to run the functions
through Docker on every stream write) and their settings checked from what it returns; alarms,
the HTTP API and bucket policies, which moto skips silently, are asserted in test_template.py.
"""
from __future__ import annotations

import json

import boto3
import pytest

from consumers.registry import CONSUMERS
from deploy.template import ESM_TYPE, TemplateError, mapping_function, prepare_for_moto

STACK = "userstream-dev-smoke"


@pytest.fixture
def stack(aws, template):
    moto_template, mappings = prepare_for_moto(template)
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(moto_template),
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    (desc,) = cfn.describe_stacks(StackName=STACK)["Stacks"]
    failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
              for e in cfn.describe_stack_events(StackName=STACK)["StackEvents"] if "FAILED" in e["ResourceStatus"]]
    assert desc["StackStatus"] == "CREATE_COMPLETE", failed
    rows = cfn.describe_stack_resources(StackName=STACK)["StackResources"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in rows
                if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
    return physical, mappings


def test_packaged_template_deploys_on_moto_and_reads_back(stack, template):
    physical, mappings = stack
    sqs = boto3.client("sqs")
    for consumer in CONSUMERS:
        parking = sqs.get_queue_url(QueueName=f"userstream-dev-{consumer}-parking")["QueueUrl"]
        parking_arn = sqs.get_queue_attributes(QueueUrl=parking, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        fq = sqs.get_queue_url(QueueName=f"userstream-dev-{consumer}-failures")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=fq, AttributeNames=["All"])["Attributes"]
        assert attrs["MessageRetentionPeriod"] == "1209600"
        assert attrs["SqsManagedSseEnabled"] == "true"
        assert int(attrs["VisibilityTimeout"]) > 900
        assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"] == parking_arn

    ddb = boto3.client("dynamodb")
    users = ddb.describe_table(TableName="userstream-dev-users")["Table"]
    assert users["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert users["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    # moto's CloudFormation ignores TimeToLiveSpecification: the TTL is asserted in test_template.py.
    assert ddb.describe_table(TableName="userstream-dev-idempotency")["Table"]["KeySchema"][0]["AttributeName"] == "id"

    s3 = boto3.client("s3")
    bucket = physical["FailureBucket"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # moto's CloudFormation ignores PublicAccessBlockConfiguration: asserted in test_template.py.

    # Functions come back with the environment and the role of their own the template gave them.
    lam = boto3.client("lambda")
    roles = set()
    for consumer in CONSUMERS:
        conf = lam.get_function_configuration(FunctionName=f"userstream-dev-{consumer}")
        env = conf["Environment"]["Variables"]
        assert env["FAILURE_POLICY"] == CONSUMERS[consumer].default_policy
        assert env["FAILURE_QUEUE_URL"].endswith(f"/userstream-dev-{consumer}-failures")
        roles.add(conf["Role"])
    assert len(roles) == len(CONSUMERS)
    for name in ("reprocess", "api"):
        env = lam.get_function_configuration(FunctionName=f"userstream-dev-{name}")["Environment"]["Variables"]
        assert {f"{c.upper().replace('-', '_')}_FAILURE_QUEUE_URL" for c in CONSUMERS} <= set(env)

    # moto owns no mapping (it would drain the stream); their settings come from the template.
    assert lam.list_event_source_mappings()["EventSourceMappings"] == []
    consumer_functions = {
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"]["FunctionName"] in {f"userstream-dev-{c}" for c in CONSUMERS}}
    assert len(consumer_functions) == len(CONSUMERS)
    assert sorted(mapping_function(p) for p in mappings.values()) == sorted(consumer_functions)
    for props in mappings.values():
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        consumer = props["EventSourceArn"]["Ref"]  # each reads through its own fan-out consumer
        assert template["Resources"][consumer]["Type"] == "AWS::Kinesis::StreamConsumer"

    # The Kinesis stream the table publishes to (moto creates it; it does not publish to it, nor
    # create StreamConsumers: the local runtime bridges the table and registers the consumers).
    summary = boto3.client("kinesis").describe_stream_summary(StreamName="userstream-dev-users-changes")
    assert summary["StreamDescriptionSummary"]["RetentionPeriodHours"] == 168


def test_prepare_for_moto_leaves_the_input_alone_and_drops_dependents(template):
    before = json.dumps(template, sort_keys=True)
    t = json.loads(before)
    esm = next(k for k, r in t["Resources"].items() if r["Type"] == ESM_TYPE)
    t["Resources"]["AlarmTopic"]["DependsOn"] = [esm]
    t.setdefault("Outputs", {})["MappingId"] = {"Value": {"Ref": esm}}
    out, mappings = prepare_for_moto(t)
    assert esm in mappings and not any(r["Type"] == ESM_TYPE for r in out["Resources"].values())
    assert "DependsOn" not in out["Resources"]["AlarmTopic"] and "MappingId" not in out["Outputs"]
    assert all("ZipFile" in r["Properties"]["Code"] for r in out["Resources"].values()
               if r["Type"] == "AWS::Lambda::Function")
    assert json.dumps(template, sort_keys=True) == before
    # A resource still using a mapping would not resolve on moto: say so instead of failing there.
    t["Resources"]["AlarmTopic"]["Properties"]["DisplayName"] = {"Ref": esm}
    with pytest.raises(TemplateError, match="prepare_for_moto"):
        prepare_for_moto(t)
