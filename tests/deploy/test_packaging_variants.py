"""Real `serverless package` runs (offline) of variants of serverless.yml: the reader budget
fails the build, and a fourth consumer deploys without touching the plugin.

Each run takes about a minute (packaging is serialized with `make package`'s lock)."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import boto3
import pytest

from deploy.template import prepare_for_moto

from .conftest import ROOT, package_variant
from .test_template import cfn_lint_errors, consumer_logical, functions_by_name, mapping_for, resources, role_statements


def test_packaging_refuses_three_dynamodb_stream_readers(tmp_path):
    proc = package_variant(tmp_path / "out", "--param=streamSource=dynamodb")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "4 readers would share the DynamoDB stream" in out  # 3 mappings + the reprocess function
    assert "--param streamSource=kinesis" in out and "dynamodbStreamReadersAccepted" in out
    assert not (tmp_path / "out" / "cloudformation-template-update-stack.json").exists()


FOURTH = """
    search-audit:                           # a fourth consumer: nothing else changes
      handler: handlers/search_indexer.handler
      policy: soft-fail
      batchSize: 20
      batchWindowSeconds: 2
      maximumRetryAttempts: 2
      maximumRecordAgeInSeconds: 3600
      timeout: 30
      memorySize: 256
      requirements: [aws-lambda-powertools, structlog, opensearch-py]
      filterPatterns:
        - eventName: [MODIFY]
      environment:
        SEARCH_URL: ${param:searchUrl}
"""


@pytest.fixture(scope="module")
def fourth_consumer_package(tmp_path_factory) -> Path:
    """serverless.yml plus a fourth block in custom.streamConsumers, packaged as it is."""
    text = (ROOT / "serverless.yml").read_text()
    anchor = "\n  # Functions that get every consumer's"
    assert anchor in text
    variant = ROOT / f"serverless.variant-{os.getpid()}.yml"  # osls reads a config only from the service root
    variant.write_text(text.replace(anchor, FOURTH.rstrip("\n") + "\n" + anchor, 1))
    out = tmp_path_factory.mktemp("fourth")
    try:
        proc = package_variant(out, "--config", variant.name)
    finally:
        variant.unlink()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return out


@pytest.fixture(scope="module")
def fourth_consumer_template(fourth_consumer_package) -> dict:
    return json.loads((fourth_consumer_package / "cloudformation-template-update-stack.json").read_text())


def test_a_fourth_consumer_gets_its_own_zip_with_only_what_it_declares(fourth_consumer_package,
                                                                      fourth_consumer_template):
    _, fn = functions_by_name(fourth_consumer_template)["search-audit"]
    path = fourth_consumer_package / fn["Properties"]["Code"]["S3Key"].rsplit("/", 1)[1]
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    assert "handlers/search_indexer.py" in names and any(n.startswith("opensearchpy/") for n in names)
    assert not any(n.startswith(("flask/", "click/", "pygments/", "httpx/", "slack_sdk/")) for n in names)


def test_a_fourth_consumer_gets_its_own_fan_out_consumer_mapping_queues_role_and_alarms(fourth_consumer_template):
    t = fourth_consumer_template
    assert len(resources(t, "AWS::Kinesis::StreamConsumer")) == 4
    assert t["Resources"][consumer_logical("search-audit")]["Properties"]["ConsumerName"] == "userstream-dev-search-audit"
    logical, fn = functions_by_name(t)["search-audit"]
    m = mapping_for(t, logical)
    assert m["EventSourceArn"] == {"Ref": consumer_logical("search-audit")}
    assert (m["BatchSize"], m["MaximumRetryAttempts"], m["BisectBatchOnFunctionError"]) == (20, 2, False)
    assert json.loads(m["FilterCriteria"]["Filters"][0]["Pattern"]) == {"data": {"eventName": ["MODIFY"]}}
    assert m["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["SearchAuditFailureQueue", "Arn"]}
    assert {"SearchAuditFailureQueue", "SearchAuditParkingQueue", "SearchAuditIteratorAgeAlarm",
            "SearchAuditErrorsAlarm"} <= set(t["Resources"])
    fanout = [s for s in role_statements(t, fn) if "kinesis:SubscribeToShard" in s["Action"]]
    assert fanout == [{"Effect": "Allow", "Action": ["kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"],
                       "Resource": [{"Ref": consumer_logical("search-audit")}]}]
    env = functions_by_name(t)["reprocess"][1]["Properties"]["Environment"]["Variables"]
    assert env["SEARCH_AUDIT_FAILURE_POLICY"] == "soft-fail"
    assert cfn_lint_errors(json.dumps(t)) == []


def test_a_fourth_consumer_deploys_on_moto(fourth_consumer_template, aws):
    stack, mappings = prepare_for_moto(fourth_consumer_template)
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName="userstream-dev", TemplateBody=json.dumps(stack),
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    assert cfn.describe_stacks(StackName="userstream-dev")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    conf = boto3.client("lambda").get_function_configuration(FunctionName="userstream-dev-search-audit")
    assert conf["Environment"]["Variables"]["FAILURE_POLICY"] == "soft-fail"
    assert len(mappings) == 4
