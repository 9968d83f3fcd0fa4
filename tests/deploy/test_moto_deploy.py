"""Smoke test: the packaged template deploys through CloudFormation on moto.

moto silently skips alarms, API Gateway v2 and bucket policies (asserted in the template
tests instead), and the event-source mappings are left out here (moto would try to run the
functions through Docker on every stream write): their settings are read back from the
template, the same source the local runtime uses.
"""
from __future__ import annotations

import boto3

from consumers.registry import CONSUMERS


def test_packaged_template_deploys_on_moto(aws, template):
    from local.aws import deploy

    deployment = deploy(template, stack_name="userstream-dev-smoke")
    sqs = boto3.client("sqs")
    urls = sqs.list_queues()["QueueUrls"]
    for consumer in CONSUMERS:
        for kind in ("failures", "parking"):
            assert any(u.endswith(f"userstream-dev-{consumer}-{kind}") for u in urls)
        fq = sqs.get_queue_url(QueueName=f"userstream-dev-{consumer}-failures")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=fq, AttributeNames=["All"])["Attributes"]
        assert attrs["MessageRetentionPeriod"] == "1209600" and "parking" in attrs["RedrivePolicy"]
    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    assert {"userstream-dev-users", "userstream-dev-idempotency"} <= set(tables)
    desc = boto3.client("dynamodb").describe_table(TableName="userstream-dev-users")["Table"]
    assert desc["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    # Functions come back with the environment the template gave them.
    lam = boto3.client("lambda")
    conf = lam.get_function_configuration(FunctionName="userstream-dev-search-indexer")
    env = conf["Environment"]["Variables"]
    assert env["FAILURE_POLICY"] == "dlq-capture" and env["FAILURE_QUEUE_URL"].endswith("search-indexer-failures")
    # The mappings, read back from the same template, with their policy settings.
    by_fn = {m.function: m for m in deployment.mappings}
    assert set(by_fn) == {f"userstream-dev-{c}" for c in CONSUMERS}
