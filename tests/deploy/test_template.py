"""The packaged CloudFormation template (serverless package, offline) says what we promise."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from consumers.registry import CONSUMERS
from deploy.template import mapping_function

from .conftest import ROOT, TEMPLATE


def resources(t, rtype):
    return {k: r for k, r in t["Resources"].items() if r["Type"] == rtype}


def functions_by_name(t):
    """{consumer/function short name: (logical id, resource)}"""
    out = {}
    for k, r in resources(t, "AWS::Lambda::Function").items():
        out[r["Properties"]["FunctionName"].split("-dev-", 1)[1]] = (k, r)
    return out


def consumer_logical(consumer):
    return "".join(p.capitalize() for p in consumer.split("-")) + "StreamConsumer"


def mapping_for(t, fn_logical):
    (m,) = [r["Properties"] for r in resources(t, "AWS::Lambda::EventSourceMapping").values()
            if r["Properties"]["FunctionName"]["Fn::GetAtt"][0] == fn_logical]
    return m


def role_statements(t, fn_resource):
    role = fn_resource["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for p in t["Resources"][role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def queue_logical(consumer, kind):
    return "".join(p.capitalize() for p in consumer.split("-")) + ("FailureQueue" if kind == "failures" else "ParkingQueue")


def cfn_lint_errors(template_text: str) -> list[str]:
    """cfn-lint's error-level findings (E rules); warnings such as the framework's redundant
    DependsOn (W3005) are allowed."""
    from cfnlint.api import ManualArgs, lint

    return [str(m) for m in lint(template_text, config=ManualArgs(regions=["us-east-1"])) if m.rule.id.startswith("E")]


def test_cfn_lint_reports_no_errors():
    assert cfn_lint_errors(TEMPLATE.read_text()) == []


def test_cfn_lint_reports_no_errors_for_an_existing_table(existing_table_template):
    assert cfn_lint_errors(json.dumps(existing_table_template)) == []


def test_cfn_lint_check_catches_a_broken_template(template):
    broken = json.loads(json.dumps(template))
    q = broken["Resources"][queue_logical("crm-sync", "failures")]["Properties"]
    q["MessageRetentionPeriod"] = "two weeks"
    q["VisibilityTimeoutt"] = 960
    errors = cfn_lint_errors(json.dumps(broken))
    assert any("VisibilityTimeoutt" in e for e in errors) and any("two weeks" in e for e in errors), errors


@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_each_stream_function_matches_its_policy(any_template, consumer):
    """The policy decides the mapping's settings, whichever source the mapping reads."""
    source, template = any_template
    spec = CONSUMERS[consumer]
    logical, fn = functions_by_name(template)[consumer]
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["FAILURE_POLICY"] == spec.default_policy
    assert fn["Properties"]["Handler"] == f"handlers/{consumer.replace('-', '_')}.handler"
    m = mapping_for(template, logical)
    assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert m["StartingPosition"] == "TRIM_HORIZON"
    if source == "kinesis":  # through its own enhanced fan-out consumer (Ref: the consumer's ARN)
        assert m["EventSourceArn"] == {"Ref": consumer_logical(consumer)}
    else:
        assert m["EventSourceArn"] == {"Fn::GetAtt": ["UsersTable", "StreamArn"]}
    if spec.default_policy == "hard-fail":  # an S3 destination, on either source: test_hardening.py
        assert "Fn::Sub" in m["DestinationConfig"]["OnFailure"]["Destination"]
    else:
        assert m["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": [queue_logical(consumer, "failures"), "Arn"]}
    if spec.default_policy == "hard-fail":
        assert m["BisectBatchOnFunctionError"] is True
        assert 0 < m["MaximumRetryAttempts"] <= 10_000
        assert 60 <= m["MaximumRecordAgeInSeconds"] <= 604_800
    else:
        assert m["BisectBatchOnFunctionError"] is False
        assert m["BatchSize"] >= 10 and m.get("MaximumBatchingWindowInSeconds", 0) >= 1
    if consumer == "slack-notifier":  # on Kinesis, Lambda filters on the decoded `data`: the change
        (f,) = m["FilterCriteria"]["Filters"]
        pattern = {"eventName": ["INSERT"]}
        assert json.loads(f["Pattern"]) == (pattern if source == "dynamodb" else {"data": pattern})
    else:
        assert "FilterCriteria" not in m


@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_send_message_on_exactly_its_own_failure_queue(template, consumer):
    _, fn = functions_by_name(template)[consumer]
    q = queue_logical(consumer, "failures")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["FAILURE_QUEUE_URL"] == {"Ref": q}
    sends = [s for s in role_statements(template, fn) if "sqs:SendMessage" in s["Action"]]
    assert all(s["Resource"] == [{"Fn::GetAtt": [q, "Arn"]}] for s in sends)
    # hard-fail sends nothing to SQS (its on-failure destination is S3); the others do
    assert bool(sends) == (CONSUMERS[consumer].default_policy != "hard-fail")
    if CONSUMERS[consumer].default_policy == "dlq-capture":
        assert env["FAILURE_BUCKET"] == {"Ref": "FailureBucket"}


def test_queues_encrypted_retained_and_redriven(template):
    queues = resources(template, "AWS::SQS::Queue")
    assert len(queues) == 2 * len(CONSUMERS) + 1  # + the reprocess job-failure queue
    for consumer in CONSUMERS:
        f = queues[queue_logical(consumer, "failures")]["Properties"]
        p = queues[queue_logical(consumer, "parking")]["Properties"]
        assert f["QueueName"] == f"userstream-dev-{consumer}-failures"
        assert p["QueueName"] == f"userstream-dev-{consumer}-parking"
        assert f["MessageRetentionPeriod"] == 1_209_600
        assert f["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [queue_logical(consumer, "parking"), "Arn"]}
        assert f["VisibilityTimeout"] > 900  # outlives the reprocess function's timeout
    for q in queues.values():
        assert q["Properties"].get("SqsManagedSseEnabled") or q["Properties"].get("KmsMasterKeyId")


def test_buckets_encrypted_and_claim_checks_private_and_expiring(template):
    for b in resources(template, "AWS::S3::Bucket").values():
        assert b["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    fb = template["Resources"]["FailureBucket"]["Properties"]
    assert all(fb["PublicAccessBlockConfiguration"].values())
    assert any(r["Status"] == "Enabled" and r["ExpirationInDays"] for r in fb["LifecycleConfiguration"]["Rules"])


def test_idempotency_table_has_ttl_and_users_table_a_stream(any_template):
    source, template = any_template
    idem = template["Resources"]["IdempotencyTable"]["Properties"]
    assert idem["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert idem["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    users = template["Resources"]["UsersTable"]["Properties"]
    assert users["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    if source == "dynamodb":
        assert "KinesisStreamSpecification" not in users and not resources(template, "AWS::Kinesis::Stream")


def test_every_alarm_exists_and_notifies_a_topic(any_template):
    _, template = any_template
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    by_metric = {}
    for a in alarms.values():
        p = a["Properties"]
        assert p["AlarmActions"] in ([{"Ref": "AlarmTopic"}], [{"Ref": "TicketTopic"}])
        by_metric.setdefault(p.get("MetricName"), []).append(p)  # metric-math alarms: None
    fns = functions_by_name(template)
    for consumer in CONSUMERS:
        logical, _ = fns[consumer]
        (age,) = [p for p in by_metric["IteratorAge"] if p["Dimensions"][0]["Value"] == {"Ref": logical}]
        assert age["Statistic"] == "Maximum"
        queue_dims = lambda metric, kind, consumer=consumer: [  # noqa: E731
            p for p in by_metric[metric]
            if p["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue_logical(consumer, kind), "QueueName"]}
        ]
        assert queue_dims("ApproximateNumberOfMessagesVisible", "failures")
        assert queue_dims("ApproximateAgeOfOldestMessage", "failures")
        assert queue_dims("ApproximateNumberOfMessagesVisible", "parking")
    for name, (logical, _) in fns.items():
        assert [p for p in by_metric["Errors"] if p["Dimensions"][0]["Value"] == {"Ref": logical}], name
    topics = resources(template, "AWS::SNS::Topic")
    assert set(topics) == {"AlarmTopic", "TicketTopic"}  # pages, tickets
    # Encrypted with a key CloudWatch may use: alarms cannot publish to an alias/aws/sns topic.
    (key_id,) = {t["Properties"]["KmsMasterKeyId"]["Ref"] for t in topics.values()}
    grants = [st for st in template["Resources"][key_id]["Properties"]["KeyPolicy"]["Statement"]
              if st["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert grants and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])


def test_reprocess_schedule_off_by_default_and_api_behind_iam(template):
    rules = list(resources(template, "AWS::Events::Rule").values())
    assert len(rules) == 2  # the drain and the rewind (the articles' scheduled replay)
    for rule in rules:
        assert rule["Properties"]["State"] == "DISABLED"
        assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["ReprocessLambdaFunction", "Arn"]}
    inputs = [json.loads(r["Properties"]["Targets"][0]["Input"]) for r in rules]
    rewind = next(i for i in inputs if i.get("kind") == "rewind")
    from reprocess.options import RewindOptions

    options = RewindOptions.from_wire(rewind)  # the schedule's event is one the Lambda accepts
    assert options.consumer == "crm-sync" and options.window_s == 900 and options.until > options.since
    routes = resources(template, "AWS::ApiGatewayV2::Route")
    assert routes and all(r["Properties"]["AuthorizationType"] == "AWS_IAM" for r in routes.values())


def test_failure_queue_visibility_outlives_the_reprocess_function(template):
    _, reprocess = functions_by_name(template)["reprocess"]
    timeout = reprocess["Properties"]["Timeout"]
    for consumer in CONSUMERS:
        q = template["Resources"][queue_logical(consumer, "failures")]["Properties"]
        assert q["VisibilityTimeout"] >= timeout


ALLOWED_WILDCARD_RESOURCE_ACTIONS = {"lambda:ListEventSourceMappings", "cloudwatch:GetMetricData",
                                     "cloudwatch:DescribeAlarms", "logs:CreateLogStream",
                                     "logs:CreateLogGroup", "logs:PutLogEvents", "logs:TagResource"}


def test_least_privilege_roles(any_template):
    _, template = any_template
    roles = resources(template, "AWS::IAM::Role")
    assert "IamRoleLambdaExecution" not in roles  # no default role holding everyone's rights
    fns = functions_by_name(template)
    assert len({f["Properties"]["Role"]["Fn::GetAtt"][0] for _, f in fns.values()}) == len(fns)  # one role each
    for name, role in roles.items():
        for policy in role["Properties"]["Policies"]:
            for st in policy["PolicyDocument"]["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                assert all("*" not in a for a in actions), (name, actions)
                res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                if "*" in res:
                    assert set(actions) <= ALLOWED_WILDCARD_RESOURCE_ACTIONS, (name, actions)
    # Each stream consumer names only its own queue; the idempotency table only slack-notifier
    # (its at-most-once claims) and crm-sync (the change_order it applied per user: read and
    # conditionally update, nothing else).
    for consumer in CONSUMERS:
        statements = role_statements(template, fns[consumer][1])
        text = json.dumps(statements)
        for other in CONSUMERS:
            if other != consumer:
                assert queue_logical(other, "failures") not in text
        assert ("IdempotencyTable" in text) == (consumer in ("slack-notifier", "crm-sync"))
        if consumer == "crm-sync":
            (guard,) = [st for st in statements if "IdempotencyTable" in json.dumps(st["Resource"])]
            assert sorted(guard["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]


def test_each_consumer_reaches_only_its_own_circuit(any_template):
    """The circuit breaker's state (streamkit/circuit.py): every stream consumer gets its
    settings from its circuitBreaker block, and may read and conditionally update only its
    own item of the circuit table (its name as the leading key), nothing else there."""
    _, template = any_template
    table = template["Resources"]["CircuitTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "consumer", "KeyType": "HASH"}]
    assert table["SSESpecification"] == {"SSEEnabled": True}
    fns = functions_by_name(template)
    for consumer in CONSUMERS:
        env = fns[consumer][1]["Properties"]["Environment"]["Variables"]
        assert env["CIRCUIT_TABLE"] == {"Ref": "CircuitTable"}
        assert (env["CIRCUIT_FAILURES"], env["CIRCUIT_PROBE_S"]) == ("5", "30")
        (st,) = [st for st in role_statements(template, fns[consumer][1]) if "CircuitTable" in json.dumps(st)]
        assert sorted(st["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        assert st["Resource"] == [{"Fn::GetAtt": ["CircuitTable", "Arn"]}]
        assert st["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [consumer]}}
    for name, (_, fn) in fns.items():
        if name == "api":  # the operator page shows each consumer's circuit: reads, nothing else
            (st,) = [st for st in role_statements(template, fn) if "CircuitTable" in json.dumps(st)]
            assert st["Action"] == ["dynamodb:GetItem"] and st["Resource"] == [{"Fn::GetAtt": ["CircuitTable", "Arn"]}]
            assert fn["Properties"]["Environment"]["Variables"]["CIRCUIT_TABLE"] == {"Ref": "CircuitTable"}
        elif name not in CONSUMERS:
            assert "CircuitTable" not in json.dumps(role_statements(template, fn))


def test_secrets_are_references_not_plaintext(template):
    for _, fn in functions_by_name(template).values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        assert "SLACK_WEBHOOK_URL" not in env and "CRM_TOKEN" not in env
        for k, v in env.items():
            if k.endswith("_PARAM"):
                assert isinstance(v, str) and v.startswith("/userstream/dev/")
    text = json.dumps(template)
    assert "hooks.slack.com" not in text and "Bearer " not in text


def test_zips_ship_runtime_code_and_no_tests_caches_or_venvs(zip_contents):
    for name, names in zip_contents.items():
        for top in ("tests/", "bench/", "local/", ".venv/", "node_modules/", "artifacts/", "scripts/", "plugins/",
                    "deploy/", "docs/", "streamkit/testing.py"):
            assert not [n for n in names if n.startswith(top)], (name, top)
        for anywhere in ("__pycache__", ".pyc"):
            assert not [n for n in names if anywhere in n], (name, anywhere)
        assert "streamkit/loop.py" in names and "consumers/registry.py" in names, name
        assert any(n.startswith("structlog/") for n in names) or name == "api", name  # dependencies are packed
        assert not any(n.startswith(("boto3/", "botocore/")) for n in names), name  # the runtime provides boto3
    assert "wsgi_handler.py" in zip_contents["api"] and "handlers/reprocess.py" in zip_contents["reprocess"]


def check_readers(template: dict, tmp_path, *args: str) -> subprocess.CompletedProcess:
    p = tmp_path / "template.json"
    p.write_text(json.dumps(template))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_readers.py"), str(p), *args],
                          capture_output=True, text=True)


def test_the_default_template_has_no_dynamodb_stream_reader(template, tmp_path):
    proc = check_readers(template, tmp_path)
    assert proc.returncode == 0 and "no DynamoDB stream is read" in proc.stdout
    text = json.dumps(template)
    assert "dynamodb:GetRecords" not in text and json.dumps({"Fn::GetAtt": ["UsersTable", "StreamArn"]}) not in text


def test_reader_budget_refuses_more_than_two_and_counts_the_reprocess_function(dynamodb_template, tmp_path):
    proc = check_readers(dynamodb_template, tmp_path)
    assert proc.returncode == 1
    out = proc.stdout
    assert "4 readers would share the DynamoDB stream" in out
    assert out.count("mapping ") == 3 and "function ReprocessLambdaFunction (its role reads the stream)" in out
    assert "throttle" in out and "IteratorAge" in out  # why
    assert "--param streamSource=kinesis" in out and "dynamodbStreamReadersAccepted=4" in out  # how
    assert check_readers(dynamodb_template, tmp_path, "--accept", "4").returncode == 0
    assert check_readers(dynamodb_template, tmp_path, "--accept", "3").returncode == 1


def test_reader_budget_allows_two_readers(dynamodb_template, tmp_path):
    t = json.loads(json.dumps(dynamodb_template))
    esm = {k: r for k, r in t["Resources"].items() if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    dropped = [k for k in esm if "Crm" not in k]
    for k in dropped:
        del t["Resources"][k]
    # A function without its mapping whose role may still read the stream is still a reader.
    assert "4 readers" in check_readers(t, tmp_path).stdout
    for k in dropped:
        role = t["Resources"][t["Resources"][mapping_function(esm[k]["Properties"])]["Properties"]["Role"]["Fn::GetAtt"][0]]
        for policy in role["Properties"]["Policies"]:
            statements = policy["PolicyDocument"]["Statement"]
            statements[:] = [st for st in statements if "dynamodb:GetRecords" not in st["Action"]]
    proc = check_readers(t, tmp_path)  # crm-sync's mapping + the reprocess function
    assert proc.returncode == 0 and "reader budget ok: 2 reader(s)" in proc.stdout


def test_reader_budget_counts_a_function_with_a_mapping_once(dynamodb_template, tmp_path):
    """A mapped function's role reads the stream too (the framework grants it): one reader."""
    from scripts.check_readers import readers_per_stream

    (readers,) = readers_per_stream(dynamodb_template).values()
    assert len(readers.mappings) == 3 and readers.functions == ["ReprocessLambdaFunction"]


@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_stream_rights_name_only_the_source_stream(any_template, consumer):
    source, template = any_template
    fns = functions_by_name(template)
    statements = role_statements(template, fns[consumer][1])
    if source == "dynamodb":
        reads = [s for s in statements if "dynamodb:GetRecords" in s["Action"]]
        assert reads and all(s["Resource"] == [{"Fn::GetAtt": ["UsersTable", "StreamArn"]}] for s in reads)
        assert "kinesis:" not in json.dumps(statements)
        return
    stream = {"Fn::GetAtt": ["UsersChangesStream", "Arn"]}
    assert "dynamodb:GetRecords" not in json.dumps(statements)
    for st in statements:
        kinesis_actions = [a for a in st["Action"] if a.startswith("kinesis:")]
        if not kinesis_actions:
            continue
        if {"kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"} & set(kinesis_actions):
            # fan-out rights on its own consumer only, never another consumer's
            assert sorted(kinesis_actions) == ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"]
            assert st["Resource"] == [{"Ref": consumer_logical(consumer)}]
        else:
            assert st["Resource"] == [stream], st
    granted = {a for st in statements for a in st["Action"] if a.startswith("kinesis:")}
    assert {"kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer", "kinesis:DescribeStreamSummary",
            "kinesis:ListShards", "kinesis:GetRecords", "kinesis:GetShardIterator"} <= granted
    assert not {"kinesis:PutRecord", "kinesis:PutRecords", "kinesis:DeleteStream"} & granted


def test_kinesis_stream_on_demand_encrypted_with_retention(template):
    (logical, stream), = resources(template, "AWS::Kinesis::Stream").items()
    props = stream["Properties"]
    assert props["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"} and "ShardCount" not in props
    assert props["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert props["RetentionPeriodHours"] == 168  # the default: 7 days
    assert props["Name"] == "userstream-dev-users-changes"
    spec = template["Resources"]["UsersTable"]["Properties"]["KinesisStreamSpecification"]
    assert spec == {"StreamArn": {"Fn::GetAtt": [logical, "Arn"]}, "ApproximateCreationDateTimePrecision": "MICROSECOND"}
    assert template["Outputs"]["UsersChangesStreamArn"]["Value"] == {"Fn::GetAtt": [logical, "Arn"]}


def test_one_enhanced_fan_out_consumer_per_stream_consumer(template):
    consumers = resources(template, "AWS::Kinesis::StreamConsumer")
    assert sorted(consumers) == sorted(consumer_logical(c) for c in CONSUMERS)
    for name in CONSUMERS:
        props = consumers[consumer_logical(name)]["Properties"]
        assert props == {"StreamARN": {"Fn::GetAtt": ["UsersChangesStream", "Arn"]},
                         "ConsumerName": f"userstream-dev-{name}"}
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    assert sorted(json.dumps(m["Properties"]["EventSourceArn"]) for m in mappings.values()) == sorted(
        json.dumps({"Ref": consumer_logical(c)}) for c in CONSUMERS)  # one reader each, none shared


def test_reprocess_reads_the_source_stream_it_is_told_about(any_template):
    source, template = any_template
    fns = functions_by_name(template)
    env = fns["reprocess"][1]["Properties"]["Environment"]["Variables"]
    assert env["STREAM_SOURCE"] == source
    stream = {"Fn::GetAtt": ["UsersChangesStream", "Arn"] if source == "kinesis" else ["UsersTable", "StreamArn"]}
    assert env["STREAM_ARN"] == stream
    statements = role_statements(template, fns["reprocess"][1])
    (read,) = [s for s in statements if s["Resource"] == [stream]]
    if source == "kinesis":
        assert sorted(read["Action"]) == ["kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                                          "kinesis:GetShardIterator", "kinesis:ListShards"]
    else:
        assert sorted(read["Action"]) == ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]


def test_api_reads_only_the_consumer_functions_configuration(template):
    _, api = functions_by_name(template)["api"]
    (st,) = [s for s in role_statements(template, api) if "lambda:GetFunctionConfiguration" in s["Action"]]
    names = sorted(r["Fn::Sub"].rsplit(":function:", 1)[1] for r in st["Resource"])
    assert names == sorted(f"userstream-dev-{c}" for c in CONSUMERS)
    text = json.dumps(template)
    assert "ALL_CONSUMER_" not in text and "USERS_STREAM" not in text  # every placeholder resolved


def test_existing_table_param_creates_no_table_and_publishes_the_kinesis_stream(existing_table_template):
    """A team's own table (usersStreamArn set) on the Kinesis source: no table, the Kinesis stream
    and its consumers are created, and its ARN is an output to point the table at (docs/deploy.md)."""
    t = existing_table_template
    assert "UsersTable" not in t["Resources"] and '"UsersTable"' not in json.dumps(t)
    assert resources(t, "AWS::Kinesis::Stream") and len(resources(t, "AWS::Kinesis::StreamConsumer")) == len(CONSUMERS)
    assert "UsersChangesStreamArn" in t["Outputs"]
    mappings = resources(t, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == len(CONSUMERS)
    fns = functions_by_name(t)
    assert fns["reprocess"][1]["Properties"]["Environment"]["Variables"]["USERS_TABLE"] == "users"
    assert "IdempotencyTable" in t["Resources"]  # everything else is still created


def test_reprocess_and_api_know_every_consumer_queue_and_policy(template):
    fns = functions_by_name(template)
    for name in ("reprocess", "api"):
        env = fns[name][1]["Properties"]["Environment"]["Variables"]
        for consumer, spec in CONSUMERS.items():
            assert env[f"{spec.key}_FAILURE_QUEUE_URL"] == {"Ref": queue_logical(consumer, "failures")}
            assert env[f"{spec.key}_PARKING_QUEUE_URL"] == {"Ref": queue_logical(consumer, "parking")}
            assert env[f"{spec.key}_FAILURE_POLICY"] == spec.default_policy


def test_reader_budget_counts_mappings_on_an_existing_stream_arn(dynamodb_template, tmp_path):
    """The same count on a team's own stream ARN (a literal, not GetAtt)."""
    from .conftest import EXAMPLE_STREAM

    t = json.loads(json.dumps(dynamodb_template).replace(json.dumps({"Fn::GetAtt": ["UsersTable", "StreamArn"]}),
                                                         json.dumps(EXAMPLE_STREAM)))
    proc = check_readers(t, tmp_path)
    assert proc.returncode == 1 and f"4 readers would share the DynamoDB stream {EXAMPLE_STREAM}" in proc.stdout


def test_cfn_lint_reports_no_errors_for_the_dynamodb_source(dynamodb_template):
    assert cfn_lint_errors(json.dumps(dynamodb_template)) == []


def test_reprocess_may_scan_only_the_users_table_and_invoke_only_itself(template):
    """Backfill (Scan, DescribeTable) names the users table alone; a job part's continuation
    invokes the reprocess function alone; checkpoints live under the bucket's jobs/ prefix."""
    _, reprocess = functions_by_name(template)["reprocess"]
    statements = role_statements(template, reprocess)
    (scan,) = [s for s in statements if "dynamodb:Scan" in s["Action"]]
    assert "dynamodb:DescribeTable" in scan["Action"]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in scan["Resource"]] == ["table/userstream-dev-users"]
    (invoke,) = [s for s in statements if "lambda:InvokeFunction" in s["Action"]]
    assert [r["Fn::Sub"].rsplit(":function:", 1)[1] for r in invoke["Resource"]] == ["userstream-dev-reprocess"]
    jobs = [s for s in statements if any("/jobs/*" in json.dumps(r) for r in s["Resource"])]
    assert jobs and {"s3:GetObject", "s3:PutObject"} <= {a for s in jobs for a in s["Action"]}


def ledger_actions(template, fn_resource) -> dict[str, set]:
    """{action: resources (as JSON text)} of a role's statements on the failure ledger."""
    out: dict[str, set] = {}
    for st in role_statements(template, fn_resource):
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        hits = {json.dumps(r, sort_keys=True) for r in res if "LedgerTable" in json.dumps(r)}
        if hits:
            for action in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
                out.setdefault(action, set()).update(hits)
    return out


def test_failure_ledger_table_and_who_may_do_what_with_it(template):
    props = template["Resources"]["LedgerTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST" and props["SSESpecification"] == {"SSEEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert [k["AttributeName"] for k in props["KeySchema"]] == ["consumer", "id"]
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "byState"  # streamkit.ledger.STATE_INDEX: counts and the parked list by state
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["consumerState", "capturedAt"]

    table = json.dumps({"Fn::GetAtt": ["LedgerTable", "Arn"]}, sort_keys=True)
    index = json.dumps({"Fn::Sub": "${LedgerTable.Arn}/index/byState"}, sort_keys=True)
    fns = functions_by_name(template)
    expected = {
        # dlq-capture: writes its captures in batches; with a circuit breaker, the record its
        # shard waits on while the sink is down (blocking, resolved: UpdateItem, Query)
        "search-indexer": {"dynamodb:BatchWriteItem": {table}, "dynamodb:UpdateItem": {table, index},
                           "dynamodb:Query": {table, index}},
        "crm-sync": {"dynamodb:UpdateItem": {table, index}, "dynamodb:Query": {table, index}},  # hard-fail: blocking
        "slack-notifier": {},  # soft-fail: its drops are metrics
        "reprocess": {"dynamodb:UpdateItem": {table}, "dynamodb:BatchWriteItem": {table}},
        "api": {"dynamodb:Query": {table, index}},  # reads only; its jobs run in the reprocess function
    }
    for name, actions in expected.items():
        assert ledger_actions(template, fns[name][1]) == actions, name
        env = fns[name][1]["Properties"]["Environment"]["Variables"]
        assert env.get("LEDGER_TABLE") == ({"Ref": "LedgerTable"} if actions else None), name


def test_ledger_items_outlive_the_longest_a_failure_can_live(template):
    """A failure can wait in its queue for the retention period once per worker attempt (each
    retry re-sends it), then sit in parking for that queue's retention: its ledger item must not
    expire before it, or the page would lose a failure that still exists."""
    from reprocess.options import DEFAULT_MAX_ATTEMPTS
    from streamkit.ledger import DEFAULT_RETENTION_DAYS

    queues = resources(template, "AWS::SQS::Queue")
    fns = functions_by_name(template)
    for consumer in CONSUMERS:
        failures = queues[queue_logical(consumer, "failures")]["Properties"]["MessageRetentionPeriod"]
        parking = queues[queue_logical(consumer, "parking")]["Properties"]["MessageRetentionPeriod"]
        longest_s = failures * DEFAULT_MAX_ATTEMPTS + parking
        for name in (consumer, "reprocess"):
            env = fns[name][1]["Properties"]["Environment"]["Variables"]
            days = int(env.get("LEDGER_RETENTION_DAYS") or DEFAULT_RETENTION_DAYS)
            assert days * 86_400 >= longest_s, (consumer, name, days, longest_s / 86_400)


def test_the_operator_api_never_receives_from_a_queue_and_keeps_job_records(template):
    """SQS has no peek: the api role may read queue depths, never receive; its job records and
    cancel requests live under the failure bucket's jobs/ prefix, which the reprocess role
    reads (cancel) and writes (progress, summary)."""
    fns = functions_by_name(template)
    api = role_statements(template, fns["api"][1])
    sqs_actions = {a for st in api for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
                   if a.startswith("sqs:")}
    assert sqs_actions == {"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    jobs = {"Fn::Sub": "${FailureBucket.Arn}/jobs/*"}
    for name, actions in (("api", {"s3:GetObject", "s3:PutObject"}), ("reprocess", {"s3:GetObject", "s3:PutObject"})):
        granted = {a for st in role_statements(template, fns[name][1]) if jobs in (st["Resource"] if isinstance(
            st["Resource"], list) else [st["Resource"]]) for a in st["Action"]}
        assert granted == actions, name
    (listing,) = [st for st in api if st["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["jobs/*"]}}
    assert any("cloudwatch:DescribeAlarms" in st["Action"] for st in api)


def test_deployment_bucket_private_versioned_and_encrypted(template):
    props = template["Resources"]["ServerlessDeploymentBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_functions_are_not_versioned(template):
    # versionFunctions: false: nothing uses versions or aliases; each deploy would add one per function
    assert not resources(template, "AWS::Lambda::Version")


def test_the_operator_api_may_describe_the_users_table_and_stream_but_read_no_item_or_record(any_template):
    """A backfill's count (DescribeTable's ItemCount) and a rewind's plan (the stream's shards and
    retention) are read by the API before an operator confirms; the items and records only by
    the reprocess function."""
    source, template = any_template
    fns = functions_by_name(template)
    api = role_statements(template, fns["api"][1])
    reprocess = role_statements(template, fns["reprocess"][1])
    (scan,) = [st for st in reprocess if "dynamodb:Scan" in st["Action"]]
    (describe,) = [st for st in api if "dynamodb:DescribeTable" in st["Action"]]
    assert describe["Action"] == ["dynamodb:DescribeTable"] and describe["Resource"] == scan["Resource"]
    stream = {"Fn::GetAtt": ["UsersChangesStream", "Arn"] if source == "kinesis" else ["UsersTable", "StreamArn"]}
    (shards,) = [st for st in api if st["Resource"] == [stream]]
    assert sorted(shards["Action"]) == (["kinesis:DescribeStreamSummary", "kinesis:ListShards"] if source == "kinesis"
                                        else ["dynamodb:DescribeStream"])
    circuits = [{"Fn::GetAtt": ["CircuitTable", "Arn"]}]  # its one GetItem: the consumers' circuit states
    assert [st["Action"] for st in api if st["Resource"] == circuits] == [["dynamodb:GetItem"]]
    granted = {a for st in api if st["Resource"] != circuits for a in st["Action"]}
    assert not {"dynamodb:Scan", "dynamodb:GetItem", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                "kinesis:GetRecords", "kinesis:GetShardIterator"} & granted
