"""Issue 13: the packaged templates are right for a first production deploy, not just complete.

`template` is the dev package; `existing_table_template` is packaged with usersStreamArn,
productionStage=true and alarmEmail (scripts/package.sh), the way a team deploys to prod.
"""
from __future__ import annotations

import json
import re

import yaml

from consumers.registry import CONSUMERS
from streamkit.metrics import COUNTERS, EmfTemplate

from .conftest import ARTIFACTS, EXAMPLE_STREAM, ROOT, function_resources, package_variant

STATEFUL = ("AWS::SQS::Queue", "AWS::S3::Bucket", "AWS::DynamoDB::Table")
# Tables that hold no data worth keeping once the stack is gone: expiring guard keys, and each
# sink's circuit state (streamkit/circuit.py fails open without it). Every other table is kept.
EPHEMERAL_TABLES = {"IdempotencyTable", "CircuitTable"}


def resources(t, rtype):
    return {k: r for k, r in t["Resources"].items() if r["Type"] == rtype}


def alarms(t):
    return {k: r["Properties"] for k, r in resources(t, "AWS::CloudWatch::Alarm").items()}


def serverless_params() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "serverless.yml").read_text(), Loader=Loader)


def fn_logical(t, name):
    (logical,) = [k for k, r in resources(t, "AWS::Lambda::Function").items()
                  if r["Properties"]["FunctionName"].endswith(f"-{name}")]
    return logical


def mapping_of(t, consumer):
    fn = fn_logical(t, consumer)
    (m,) = [k for k, r in resources(t, "AWS::Lambda::EventSourceMapping").items()
            if r["Properties"]["FunctionName"]["Fn::GetAtt"][0] == fn]
    return m


def role_statements(t, fn_name):
    fn = t["Resources"][fn_logical(t, fn_name)]
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for p in t["Resources"][role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def dims(props):
    return {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}


def queue(consumer, kind):
    return "".join(p.capitalize() for p in consumer.split("-")) + kind


# ---- 1. redeploy after a failed first deploy; protection on prod -------------------------------

def test_stateful_resources_are_kept_except_when_their_first_create_fails(any_template):
    _, template = any_template  # on both sources
    kept = [k for k, r in template["Resources"].items()
            if r["Type"] in STATEFUL and k != "ServerlessDeploymentBucket" and k not in EPHEMERAL_TABLES]
    assert {"UsersTable", "LedgerTable"} <= set(kept) and len(kept) >= 2 * len(CONSUMERS) + 4
    for k in kept:
        r = template["Resources"][k]
        assert r.get("DeletionPolicy") == "RetainExceptOnCreate" and r.get("UpdateReplacePolicy") == "Retain", k


def test_production_stage_protects_the_table_and_the_stack(template):
    params = serverless_params()["params"]
    assert params["prod"]["productionStage"] is True and params["default"]["productionStage"] is False
    assert template["Resources"]["UsersTable"]["Properties"]["DeletionProtectionEnabled"] is False  # wired to it
    dev_state = json.loads((ARTIFACTS / "serverless-state.json").read_text())
    prod_state = json.loads((ARTIFACTS / "existing-table" / "serverless-state.json").read_text())
    assert dev_state["service"]["provider"]["deletionProtection"] in (False, "false")
    assert prod_state["service"]["provider"]["deletionProtection"] in (True, "true")  # termination protection


# ---- 2. alarms that reach a person ------------------------------------------------------------

def test_alarm_email_subscribes_the_page_and_ticket_topics(template, existing_table_template):
    subs = {r["Properties"]["TopicArn"]["Ref"]: r["Properties"] for r in
            resources(existing_table_template, "AWS::SNS::Subscription").values()}
    assert set(subs) == {"AlarmTopic", "TicketTopic"}
    assert all(s["Protocol"] == "email" and s["Endpoint"] == "oncall@example.com" for s in subs.values())
    assert not resources(template, "AWS::SNS::Subscription")  # dev without alarmEmail: none...
    assert "alarmEmail is empty" in (ARTIFACTS / "package-dev.log").read_text()  # ...and a warning


def test_a_production_package_without_search_url_or_alarm_email_fails_naming_the_fix(tmp_path):
    proc = package_variant(tmp_path / "a", "--stage", "prod")
    assert proc.returncode != 0 and '--param="searchUrl=' in proc.stdout + proc.stderr
    proc = package_variant(tmp_path / "b", "--stage", "prod", "--param=searchUrl=https://search-x.us-east-1.es.amazonaws.com")
    assert proc.returncode != 0 and "alarmEmail is empty" in proc.stdout + proc.stderr
    proc = package_variant(tmp_path / "c", "--param=usersStreamArn=arn:aws:dynamodb:us-east-1:1:table/x")
    assert proc.returncode != 0 and "is not a DynamoDB stream ARN" in proc.stdout + proc.stderr


def test_every_alarm_has_an_explicit_unique_name(any_template):
    _, template = any_template  # on both sources
    names = [p["AlarmName"] for p in alarms(template).values()]
    assert len(names) == len(set(names)) and all(n.startswith("userstream-dev-") for n in names)


def test_errors_alarms_need_3_of_5_minutes(any_template):
    _, template = any_template  # on both sources
    errors = [p for p in alarms(template).values() if p.get("MetricName") == "Errors"]
    assert len(errors) == len(resources(template, "AWS::Lambda::Function"))
    assert all(p["EvaluationPeriods"] == 5 and p["DatapointsToAlarm"] == 3 for p in errors)


def test_soft_fail_consumers_open_tickets_not_pages(any_template):
    _, template = any_template  # on both sources
    for consumer, spec in CONSUMERS.items():
        own = [p for p in alarms(template).values() if p["AlarmName"].startswith(f"userstream-dev-{consumer}-")]
        assert own, consumer
        for p in own:
            page_anyway = p["AlarmName"].endswith(("destination-delivery-failures", "parking-queue-depth"))
            expected = "TicketTopic" if spec.default_policy == "soft-fail" and not page_anyway else "AlarmTopic"
            assert p["AlarmActions"] == [{"Ref": expected}], p["AlarmName"]


def test_soft_fail_dropped_records_alarm_reads_the_metric_the_code_emits(template):
    (p,) = [p for p in alarms(template).values() if p["AlarmName"] == "userstream-dev-slack-notifier-dropped-records"]
    doc = json.loads(EmfTemplate("slack-notifier", COUNTERS, namespace=p["Namespace"]).render({"failed": 1}))
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert p["MetricName"] in [m["Name"] for m in directive["Metrics"]] and p["MetricName"] == "failed"
    assert set(dims(p)) == set(directive["Dimensions"][0]) and all(doc[k] == v for k, v in dims(p).items())
    assert p["Threshold"] > 1 and p["AlarmActions"] == [{"Ref": "TicketTopic"}]


def test_each_consumer_alarms_when_its_sink_circuit_is_open_on_the_metric_the_breaker_emits(template):
    from streamkit.circuit import METRIC_OPEN

    topics = {"slack-notifier": "TicketTopic", "search-indexer": "AlarmTopic", "crm-sync": "AlarmTopic"}
    for consumer, topic in topics.items():
        (p,) = [p for p in alarms(template).values() if p["AlarmName"] == f"userstream-dev-{consumer}-circuit-open"]
        doc = json.loads(EmfTemplate(consumer, (METRIC_OPEN,), namespace=p["Namespace"]).render({METRIC_OPEN: 4}))
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert p["MetricName"] == METRIC_OPEN == directive["Metrics"][0]["Name"] and p["Statistic"] == "Sum"
        assert set(dims(p)) == set(directive["Dimensions"][0]) and all(doc[k] == v for k, v in dims(p).items())
        assert p["Threshold"] == 1 and p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert p["AlarmActions"] == [{"Ref": topic}]


# ---- 3. alarm coverage ------------------------------------------------------------------------

def test_every_function_alarms_on_errors_throttles_and_duration_near_its_timeout(any_template):
    _, template = any_template  # on both sources
    for name, props in function_resources(template).items():
        fn = {"Ref": fn_logical(template, name)}
        found = {p["MetricName"]: p for p in alarms(template).values() if dims(p).get("FunctionName") == fn}
        assert {"Errors", "Throttles", "Duration"} <= set(found), name
        assert found["Duration"]["Threshold"] == props["Timeout"] * 1000 * 80 // 100


def test_every_consumer_alarms_on_lost_destinations_drops_lag_and_silence(any_template):
    _, template = any_template  # on both sources
    for consumer in CONSUMERS:
        fn = {"Ref": fn_logical(template, consumer)}
        mapping = mapping_of(template, consumer)
        mine = [p for p in alarms(template).values() if p["AlarmName"].startswith(f"userstream-dev-{consumer}-")]
        by_metric = {p.get("MetricName"): p for p in mine}
        assert dims(by_metric["DestinationDeliveryFailures"]) == {"FunctionName": fn}
        assert dims(by_metric["DroppedEventCount"]) == {"EventSourceMappingUUID": {"Ref": mapping}}
        age = by_metric["IteratorAge"]
        assert age["Statistic"] == "Maximum" and age["TreatMissingData"] in ("missing", "breaching")
        (silent,) = [p for p in mine if p.get("Metrics")]
        metrics = {m["Id"]: m for m in silent["Metrics"]}
        assert metrics["polled"]["MetricStat"]["Metric"]["MetricName"] == "PolledEventCount"
        assert metrics["writes"]["MetricStat"]["Metric"]["Namespace"] == "AWS/DynamoDB"
        props = template["Resources"][mapping]["Properties"]
        assert props["MetricsConfig"] == {"Metrics": ["EventCount"]}


def test_kinesis_source_alarms_when_the_table_stops_publishing(template, dynamodb_template):
    (p,) = [p for p in alarms(template).values() if p["AlarmName"] == "userstream-dev-users-changes-not-published"]
    metrics = {m["Id"]: m for m in p["Metrics"]}
    published = metrics["published"]["MetricStat"]["Metric"]
    assert (published["Namespace"], published["MetricName"]) == ("AWS/Kinesis", "IncomingRecords")
    assert published["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": "UsersChangesStream"}}]
    writes = metrics["writes"]["MetricStat"]["Metric"]
    assert writes["Dimensions"] == [{"Name": "TableName", "Value": "userstream-dev-users"}]
    assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}] and "Period" not in p
    assert not [a for a in alarms(dynamodb_template).values() if a["AlarmName"].endswith("-not-published")]


def test_queue_alarms_do_not_read_ok_on_an_idle_queue(any_template):
    _, template = any_template  # on both sources
    for p in alarms(template).values():
        if p.get("Namespace") == "AWS/SQS":
            assert p["TreatMissingData"] == "ignore", p["AlarmName"]


def test_tables_topics_api_schedule_and_async_jobs_are_watched(template):
    metrics = [(p.get("Namespace"), p.get("MetricName")) for p in alarms(template).values()]
    for needed in [("AWS/DynamoDB", "ReadThrottleEvents"), ("AWS/DynamoDB", "WriteThrottleEvents"),
                   ("AWS/SNS", "NumberOfNotificationsFailed"), ("AWS/Events", "FailedInvocations"),
                   ("AWS/ApiGateway", "5xx"), ("AWS/Lambda", "AsyncEventsDropped")]:
        assert needed in metrics, needed
    system = [p for p in alarms(template).values() if p["AlarmName"].endswith("-system-errors")]
    assert len(system) == 2
    for p in system:
        ops = [m["MetricStat"]["Metric"] for m in p["Metrics"] if "MetricStat" in m]
        assert all(m["MetricName"] == "SystemErrors" and {d["Name"] for d in m["Dimensions"]} == {"TableName", "Operation"}
                   for m in ops)
    topics = [dims(p)["TopicName"]["Fn::GetAtt"][0] for p in alarms(template).values()
              if p.get("MetricName") == "NumberOfNotificationsFailed"]
    assert sorted(topics) == ["AlarmTopic", "TicketTopic"]


# ---- 4. hard-fail records outlive the stream --------------------------------------------------

def test_hard_fail_consumers_keep_failed_invocations_in_their_own_bucket(any_template):
    _, template = any_template  # on both sources
    for consumer, spec in CONSUMERS.items():
        props = template["Resources"][mapping_of(template, consumer)]["Properties"]
        dest = props["DestinationConfig"]["OnFailure"]["Destination"]
        sends = [s for s in role_statements(template, consumer) if "sqs:SendMessage" in s["Action"]]
        if spec.default_policy != "hard-fail":
            assert dest == {"Fn::GetAtt": [queue(consumer, "FailureQueue"), "Arn"]} and sends
            continue
        bucket_id = queue(consumer, "OnFailureBucket")
        bucket = template["Resources"][bucket_id]
        name = bucket["Properties"]["BucketName"]["Fn::Sub"]
        assert dest == {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{name}"}
        assert not sends  # nothing of it goes to SQS from the function
        grants = {a: s["Resource"] for s in role_statements(template, consumer) for a in s["Action"]}
        assert grants["s3:PutObject"] == [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{name}/*"}]
        assert grants["s3:ListBucket"] == [dest]
        (note,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
        assert note["Queue"] == {"Fn::GetAtt": [queue(consumer, "FailureQueue"), "Arn"]}
        policy = template["Resources"][queue(consumer, "FailureQueuePolicy")]["Properties"]["PolicyDocument"]
        (st,) = policy["Statement"]
        assert st["Principal"] == {"Service": "s3.amazonaws.com"} and st["Condition"]["ArnEquals"]["aws:SourceArn"] == dest
        assert bucket["DependsOn"] == [queue(consumer, "FailureQueuePolicy")]
        # the worker reads them through the drain: by version (the bucket is versioned), and a
        # missing object must read as NoSuchKey (ListBucket), not AccessDenied (left forever)
        worker = role_statements(template, "reprocess")
        objects = {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{name}/*"}
        assert any({"s3:GetObject", "s3:GetObjectVersion"} <= set(s["Action"]) and objects in s["Resource"]
                   for s in worker)
        assert any(s["Action"] == ["s3:ListBucket"] and dest in s["Resource"] for s in worker)


# ---- 5. reprocess jobs run once or are kept ---------------------------------------------------

def test_reprocess_async_invocations_are_not_retried_and_failures_are_kept(template):
    (cfg,) = resources(template, "AWS::Lambda::EventInvokeConfig").values()
    p = cfg["Properties"]
    assert p["FunctionName"] == {"Ref": "ReprocessLambdaFunction"} and p["MaximumRetryAttempts"] == 0
    assert p["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["ReprocessJobFailureQueue", "Arn"]}
    assert any(s["Resource"] == [{"Fn::GetAtt": ["ReprocessJobFailureQueue", "Arn"]}] and "sqs:SendMessage" in s["Action"]
               for s in role_statements(template, "reprocess"))


# ---- 6. the operator API ----------------------------------------------------------------------

def flask_routes() -> set[str]:
    from opsapi import create_app

    out = set()
    for rule in create_app().url_map.iter_rules():  # static/<path:filename> too: the page's app.js
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "{}", rule.rule)
        out |= {f"{m} {path}" for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def test_api_routes_are_the_apps_routes_each_behind_iam(template):
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    assert {re.sub(r"\{[^}]+\}", "{}", k) for k in routes} == flask_routes()
    assert all(r["AuthorizationType"] == "AWS_IAM" for r in routes.values())


def test_api_access_logs_name_the_caller_and_the_stage_is_throttled(template):
    stage = template["Resources"]["HttpApiStage"]["Properties"]
    assert "$context.identity.userArn" in stage["AccessLogSettings"]["Format"]
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0 and stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] > 0
    posts = set(stage["RouteSettings"])
    default_rate = stage["DefaultRouteSettings"]["ThrottlingRateLimit"]
    # every POST (it starts, changes or stops a job) at the lower rate
    assert {re.sub(r"\{[^}]+\}", "{}", k) for k in posts} == {k for k in flask_routes() if k.startswith("POST ")}
    assert all(stage["RouteSettings"][k]["ThrottlingRateLimit"] <= default_rate for k in posts)


def test_read_only_operators_can_be_granted_the_gets_without_reprocess(template):
    def grants(policy):
        (st,) = template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
        assert st["Action"] == ["execute-api:Invoke"]
        return [r["Fn::Sub"].split("${HttpApi}/*/", 1)[1] for r in st["Resource"]]

    read = grants("OpsApiReadOnlyPolicy")
    assert read and all(g.startswith("GET/") for g in read)
    jobs = grants("OpsApiReprocessPolicy")  # whatever starts or cancels a job, and nothing else
    assert sorted(jobs) == ["POST/consumers/*/jobs/*", "POST/consumers/*/redrive", "POST/consumers/*/reprocess",
                            "POST/jobs/*/cancel"]
    assert not set(read) & set(jobs)


# ---- 7. bring your own table ------------------------------------------------------------------

def test_an_existing_table_starts_at_latest_and_is_named_by_its_stream(template, existing_table_template):
    t = existing_table_template
    for m in resources(t, "AWS::Lambda::EventSourceMapping").values():
        assert m["Properties"]["StartingPosition"] == "LATEST"  # no 24-hour replay into Slack and the CRM
    for m in resources(template, "AWS::Lambda::EventSourceMapping").values():
        assert m["Properties"]["StartingPosition"] == "TRIM_HORIZON"  # a new table: read it all
    table = EXAMPLE_STREAM.split(":table/")[1].split("/")[0]
    env = t["Resources"][fn_logical(t, "reprocess")]["Properties"]["Environment"]["Variables"]
    assert env["USERS_TABLE"] == table  # package.sh passes no usersTableName
    (get,) = [s for s in role_statements(t, "reprocess") if "dynamodb:GetItem" in s["Action"] and "Fn::Sub" in s["Resource"][0]
              and ":table/" in s["Resource"][0]["Fn::Sub"]]
    assert get["Resource"] == [{"Fn::Sub": get["Resource"][0]["Fn::Sub"]}]  # that table alone
    assert get["Resource"][0]["Fn::Sub"].endswith(f":table/{table}") and "dynamodb:Scan" in get["Action"]  # backfill


def test_search_roles_are_outputs_for_the_domain_access_policy(template):
    outputs = template["Outputs"]
    assert outputs["SearchIndexerRoleArn"]["Value"] == {"Fn::GetAtt": ["SearchDashindexerIamRoleLambdaExecution", "Arn"]}
    assert outputs["ReprocessRoleArn"]["Value"] == {"Fn::GetAtt": ["ReprocessIamRoleLambdaExecution", "Arn"]}


# ---- 8. smaller items -------------------------------------------------------------------------

def test_alarm_key_policy_scoped_to_this_stacks_alarms_with_an_alias(template):
    (st,) = [s for s in template["Resources"]["AlarmTopicKey"]["Properties"]["KeyPolicy"]["Statement"]
             if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert "kms:GenerateDataKey*" in st["Action"]
    assert "aws:SourceAccount" in st["Condition"]["StringEquals"] and "aws:SourceArn" in st["Condition"]["ArnLike"]
    (alias,) = resources(template, "AWS::KMS::Alias").values()
    assert alias["Properties"]["TargetKeyId"] == {"Ref": "AlarmTopicKey"}


def test_claim_checks_and_failed_invocations_outlive_every_attempt(template):
    from reprocess.options import DEFAULT_MAX_ATTEMPTS

    assert serverless_params()["custom"]["reprocessMaxAttempts"] == DEFAULT_MAX_ATTEMPTS
    retention_days = template["Resources"]["CrmSyncFailureQueue"]["Properties"]["MessageRetentionPeriod"] // 86400
    needed = (DEFAULT_MAX_ATTEMPTS + 1) * retention_days
    rules = template["Resources"]["FailureBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (claim,) = [r for r in rules if r.get("Prefix") == "claim-checks/"]
    assert claim["ExpirationInDays"] >= needed
    for k, b in resources(template, "AWS::S3::Bucket").items():
        if k.endswith("OnFailureBucket"):
            assert all(r["ExpirationInDays"] >= needed for r in b["Properties"]["LifecycleConfiguration"]["Rules"])
