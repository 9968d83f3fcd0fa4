"""Embedded AWS: the stack from the (packaged or hand-written) template, functions read back
from what moto deployed, mapping settings from the same template."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from deploy.template import prepare_for_moto
from local.aws import apply_local_overrides, deploy
from local.esm import Emulator
from local.functions import FunctionRuntime
from local.template import TemplateError, load_template
from tests.local import recorder
from tests.local.stack_template import template

ROOT = Path(__file__).resolve().parents[2]
TEST_HANDLERS = {c: "tests/local/fn_handlers.handler" for c in ("search-indexer", "slack-notifier", "crm-sync")}


def test_strip_keeps_everything_but_the_mappings_and_inlines_code():
    t = template()
    moto_t, mappings = prepare_for_moto(t)
    assert len(mappings) == 3 and all(k.endswith("EventSourceMappingDynamodbUsersTable") for k in mappings)
    assert not [r for r in moto_t["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(moto_t["Resources"]) == len(t["Resources"]) - 3
    fn = moto_t["Resources"]["CrmDashsyncLambdaFunction"]["Properties"]
    assert "ZipFile" in fn["Code"]
    assert fn["Environment"] == t["Resources"]["CrmDashsyncLambdaFunction"]["Properties"]["Environment"]
    assert "S3Bucket" in t["Resources"]["CrmDashsyncLambdaFunction"]["Properties"]["Code"]  # input untouched


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")  # moto skips it, as on AWS-less runs
def test_deploy_reads_the_functions_back_from_the_stack(aws):
    dep = deploy(template(TEST_HANDLERS, batch_size=7), overrides={"SEARCH_URL": "sqlite:///x.db", "CRM_TOKEN": "t"})
    sqs, ddb = boto3.client("sqs"), boto3.client("dynamodb")
    crm = dep.function_for("crm-sync")
    assert crm.name == "userstream-dev-crm-sync" and crm.handler == "tests/local/fn_handlers.handler"
    assert crm.timeout_s == 30 and crm.arn.endswith(":function:userstream-dev-crm-sync")
    env = crm.environment
    assert env["FAILURE_POLICY"] == "hard-fail" and env["USERS_TABLE"] == "userstream-dev-users"
    # moto names CloudFormation queues by their AWS-style URL; either form reaches the queue
    assert env["FAILURE_QUEUE_URL"].endswith("/123456789012/userstream-dev-crm-sync-failures")
    arn = sqs.get_queue_attributes(QueueUrl=env["FAILURE_QUEUE_URL"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert arn.endswith(":userstream-dev-crm-sync-failures")
    assert env["SEARCH_URL"] == "sqlite:///x.db" and env["CRM_TOKEN"] == "t" and "CRM_TOKEN_PARAM" not in env
    assert env["SLACK_WEBHOOK_URL_PARAM"]  # not overridden: left as deployed
    assert set(dep.functions) == {f"userstream-dev-{n}" for n in ("search-indexer", "slack-notifier", "crm-sync", "reprocess")}
    stream_arn = ddb.describe_table(TableName="userstream-dev-users")["Table"]["LatestStreamArn"]
    by_fn = {m.function: m for m in dep.mappings}
    assert all(m.stream_arn == stream_arn and m.batch_size == 7 for m in dep.mappings)
    si = by_fn["userstream-dev-search-indexer"]
    assert si.bisect_on_error and si.report_batch_item_failures and si.max_retry_attempts == 5
    assert si.on_failure_arn == sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName="userstream-dev-search-indexer-esm-on-failure")["QueueUrl"],
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert by_fn["userstream-dev-slack-notifier"].filter_criteria["Filters"][0]["Pattern"] == '{"eventName": ["INSERT"]}'
    assert by_fn["userstream-dev-crm-sync"].max_retry_attempts == -1
    assert boto3.client("lambda").list_event_source_mappings()["EventSourceMappings"] == []  # moto never sees them

    # and the emulator runs the deployed functions with their deployed environment
    recorder.calls.clear()
    em = Emulator(dep.mappings, {n: FunctionRuntime(c) for n, c in dep.functions.items()}, retry_backoff_s=0)
    for fn in ("search-indexer", "slack-notifier", "crm-sync"):
        em.redeploy(dep.function_for(fn).name, {"FN_NAME": fn})
    ddb.put_item(TableName="userstream-dev-users", Item={"user_id": {"S": "a1"}})
    ddb.delete_item(TableName="userstream-dev-users", Key={"user_id": {"S": "a1"}})
    assert em.run_until_idle().ok
    got = sorted((n, tuple(users)) for n, _, users in recorder.calls)
    assert got == [("crm-sync", ("a1", "a1")), ("search-indexer", ("a1", "a1")), ("slack-notifier", ("a1",))]


def test_only_stand_in_settings_can_be_overridden():
    with pytest.raises(ValueError, match="FAILURE_QUEUE_URL"):
        apply_local_overrides({}, {"FAILURE_QUEUE_URL": "http://elsewhere"})


def test_a_missing_template_says_how_to_make_it(tmp_path):
    with pytest.raises(TemplateError, match="make package"):
        load_template(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TemplateError, match="not valid JSON"):
        load_template(tmp_path / "bad.json")


def test_cli_run_until_idle_on_a_fresh_stack(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(template()))
    proc = subprocess.run([sys.executable, "-m", "local", "run", "--until-idle", "--template", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "LOCAL_ESM_STATE": str(tmp_path / "esm.json")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "userstream-dev-crm-sync: iterator age 0.0s" in proc.stdout
    state = json.loads((tmp_path / "esm.json").read_text())
    assert {m["functionName"] for m in state["mappings"]} == {
        f"userstream-dev-{n}" for n in ("search-indexer", "slack-notifier", "crm-sync")}


def test_cli_without_a_template_fails_clearly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "local", "demo", "--template", str(tmp_path / "missing.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "make package" in proc.stderr


def test_without_node_the_demo_says_how_to_get_it(tmp_path):
    import os

    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "LOCAL_TEMPLATE": str(tmp_path / "none.json")}
    proc = subprocess.run([sys.executable, "-m", "local", "demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Node.js 20+" in proc.stderr and "make package" in proc.stderr


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
@pytest.mark.parametrize("source", ["kinesis", "dynamodb"])
def test_the_packaged_template_deploys_and_its_mappings_are_the_emulators(aws, source):
    from local.template import SOURCE_TEMPLATES

    packaged = ROOT / SOURCE_TEMPLATES[source]
    if not packaged.exists():
        pytest.skip("no packaged template (run `make package`)")
    t = load_template(packaged)
    esms = {k: r["Properties"] for k, r in t["Resources"].items() if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    dep = deploy(t, overrides={"SEARCH_URL": "sqlite:///x.db"})
    assert {m.name for m in dep.mappings} == set(esms) and dep.source == source
    for m in dep.mappings:
        props = esms[m.name]
        assert m.batch_size == props.get("BatchSize", 100)
        assert m.max_retry_attempts == props.get("MaximumRetryAttempts", -1)
        assert m.max_record_age_s == props.get("MaximumRecordAgeInSeconds", -1)
        assert m.bisect_on_error == props.get("BisectBatchOnFunctionError", False)
        dest = props["DestinationConfig"]["OnFailure"]["Destination"]  # hard-fail: its bucket (the plugin's Fn::Sub)
        assert m.report_batch_item_failures and m.on_failure_arn.startswith(
            "arn:aws:s3:::userstream-dev-" if "Fn::Sub" in dest else "arn:aws:sqs:")
        assert m.function in dep.functions and m.source == source
        fn = dep.functions[m.function]
        assert fn.environment["SEARCH_URL"] == "sqlite:///x.db" and fn.handler.startswith("handlers/")
    # a hard-fail consumer's on-failure objects reach its failure queue (moto's CloudFormation drops the notification)
    from consumers.registry import get_consumer
    from streamkit import onfailure

    (hard,) = [m for m in dep.mappings if m.on_failure_arn.startswith("arn:aws:s3:::")]
    key = "aws/lambda/0f3c/shardId-000000000000/2026/11/29/2026-11-29T21.00.00-a1"
    boto3.client("s3").put_object(Bucket=hard.on_failure_arn.rsplit(":", 1)[1], Key=key, Body=b"{}")
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=get_consumer("crm-sync").queue_name("failures"))["QueueUrl"]
    (note,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert [r.key for r in onfailure.object_refs(json.loads(note["Body"]))] == [key]  # and not S3's test event
    if source == "dynamodb":
        assert all(m.stream_arn.startswith("arn:aws:dynamodb:") and m.consumer_arn is None for m in dep.mappings)
        assert dep.kinesis_destinations == []
        return
    # Each mapping reads through the enhanced fan-out consumer the template declares: registered
    # on moto (its CloudFormation has no StreamConsumer) under the template's name.
    kinesis = boto3.client("kinesis")
    (stream,) = {m.stream_arn for m in dep.mappings}
    registered = {c["ConsumerName"]: c["ConsumerARN"] for c in kinesis.list_stream_consumers(StreamARN=stream)["Consumers"]}
    assert sorted(registered) == sorted(f"userstream-dev-{c}" for c in ("search-indexer", "slack-notifier", "crm-sync"))
    assert sorted(m.consumer_arn for m in dep.mappings) == sorted(registered.values())
    # and the table's KinesisStreamSpecification becomes the bridge to that stream
    assert dep.kinesis_destinations == [("userstream-dev-users", stream)]
    boto3.client("dynamodb").put_item(TableName="userstream-dev-users", Item={"user_id": {"S": "k1"}})
    (bridge,) = dep.bridges()
    assert bridge.pump() == 1
    assert describe_again(t).mappings == dep.mappings  # describing twice reuses the registered consumers


def describe_again(t):
    from local.aws import describe

    return describe(t, overrides={"SEARCH_URL": "sqlite:///x.db"})
