"""A hand-written stand-in for ``serverless package`` output, in the same CloudFormation shape
(logical ids, Refs/GetAtts, EventSourceMapping properties) - used when the packaged
template (artifacts/cloudformation-template-update-stack.json) is not there."""
from __future__ import annotations

import copy
import json

SERVICE, STAGE = "userstream", "dev"
CONSUMERS = {
    # name: (logical prefix, policy, mapping extras)
    "search-indexer": ("SearchDashindexer", "dlq-capture", {"BisectBatchOnFunctionError": True}),
    "slack-notifier": ("SlackDashnotifier", "soft-fail", {
        "FilterCriteria": {"Filters": [{"Pattern": json.dumps({"eventName": ["INSERT"]})}]},
    }),
    "crm-sync": ("CrmDashsync", "hard-fail", {"MaximumRetryAttempts": -1, "MaximumRecordAgeInSeconds": -1}),
}


def _queue(name: str) -> dict:
    return {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name, "MessageRetentionPeriod": 1209600}}


def _camel(consumer: str) -> str:
    return "".join(p.capitalize() for p in consumer.split("-"))


def template(handlers: dict[str, str] | None = None, *, batch_size: int = 100) -> dict:
    """The stack: users table + stream, idempotency table, queues, one function per consumer,
    the reprocess function, an on-failure queue per mapping and the three mappings."""
    handlers = handlers or {c: f"handlers/{c.replace('-', '_')}.handler" for c in CONSUMERS}
    r: dict = {
        "ServerlessDeploymentBucket": {"Type": "AWS::S3::Bucket"},
        "UsersTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": f"{SERVICE}-{STAGE}-users",
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "user_id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "user_id", "KeyType": "HASH"}],
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
        }},
        "IdempotencyTable": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": f"{SERVICE}-{STAGE}-idempotency",
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        }},
        "IamRoleLambdaExecution": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": f"{SERVICE}-{STAGE}-lambdaRole",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}, "Action": ["sts:AssumeRole"]}]},
        }},
    }
    common = {
        "SERVICE_NAME": SERVICE, "STAGE": STAGE,
        "USERS_TABLE": {"Ref": "UsersTable"}, "IDEMPOTENCY_TABLE": {"Ref": "IdempotencyTable"},
        "SLACK_WEBHOOK_URL_PARAM": f"/{SERVICE}/{STAGE}/slack-webhook-url",
        "CRM_TOKEN_PARAM": f"/{SERVICE}/{STAGE}/crm-token",
        "CRM_BASE_URL": "https://api.hubapi.com",
        "SEARCH_URL": "https://search.example.invalid",
    }
    reprocess_env = dict(common)
    for consumer, (prefix, policy, extras) in CONSUMERS.items():
        key, camel = consumer.upper().replace("-", "_"), _camel(consumer)
        r[f"{camel}FailuresQueue"] = _queue(f"{SERVICE}-{STAGE}-{consumer}-failures")
        r[f"{camel}ParkingQueue"] = _queue(f"{SERVICE}-{STAGE}-{consumer}-parking")
        r[f"{camel}OnFailureQueue"] = _queue(f"{SERVICE}-{STAGE}-{consumer}-esm-on-failure")
        reprocess_env[f"{key}_FAILURE_QUEUE_URL"] = {"Ref": f"{camel}FailuresQueue"}
        reprocess_env[f"{key}_PARKING_QUEUE_URL"] = {"Ref": f"{camel}ParkingQueue"}
        env = dict(common, FAILURE_POLICY=policy,
                   FAILURE_QUEUE_URL={"Ref": f"{camel}FailuresQueue"},
                   PARKING_QUEUE_URL={"Ref": f"{camel}ParkingQueue"})
        r[f"{prefix}LambdaFunction"] = {"Type": "AWS::Lambda::Function", "Properties": {
            "Code": {"S3Bucket": {"Ref": "ServerlessDeploymentBucket"},
                     "S3Key": f"serverless/{SERVICE}/{STAGE}/1/{SERVICE}.zip"},
            "Handler": handlers[consumer], "Runtime": "python3.12",
            "FunctionName": f"{SERVICE}-{STAGE}-{consumer}", "MemorySize": 512, "Timeout": 30,
            "Environment": {"Variables": env},
            "Role": {"Fn::GetAtt": ["IamRoleLambdaExecution", "Arn"]},
        }, "DependsOn": ["IamRoleLambdaExecution"]}
        r[f"{prefix}EventSourceMappingDynamodbUsersTable"] = {
            "Type": "AWS::Lambda::EventSourceMapping",
            "DependsOn": ["IamRoleLambdaExecution"],
            "Properties": {
                "BatchSize": batch_size,
                "MaximumBatchingWindowInSeconds": 0,
                "EventSourceArn": {"Fn::GetAtt": ["UsersTable", "StreamArn"]},
                "FunctionName": {"Fn::GetAtt": [f"{prefix}LambdaFunction", "Arn"]},
                "StartingPosition": "TRIM_HORIZON",
                "Enabled": True,
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "MaximumRetryAttempts": 5,
                "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [f"{camel}OnFailureQueue", "Arn"]}}},
                **copy.deepcopy(extras),
            },
        }
    # what `serverless package` adds around each function: log group, version, exports
    outputs: dict = {"ServerlessDeploymentBucketName": {
        "Value": {"Ref": "ServerlessDeploymentBucket"},
        "Export": {"Name": f"sls-{SERVICE}-{STAGE}-ServerlessDeploymentBucketName"}}}
    r["ServerlessDeploymentBucketPolicy"] = {"Type": "AWS::S3::BucketPolicy", "Properties": {
        "Bucket": {"Ref": "ServerlessDeploymentBucket"},
        "PolicyDocument": {"Statement": [{"Action": "s3:*", "Effect": "Deny", "Principal": "*",
                                          "Resource": [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::",
                                                                          {"Ref": "ServerlessDeploymentBucket"}, "/*"]]}],
                                          "Condition": {"Bool": {"aws:SecureTransport": False}}}]}}}
    r["IamRoleLambdaExecution"]["Properties"]["Policies"] = [{
        "PolicyName": {"Fn::Join": ["-", [SERVICE, STAGE, "lambda"]]},
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/"
                                     + f"{SERVICE}-{STAGE}*:*"}]}]}}]
    for consumer, (prefix, _, _) in CONSUMERS.items():
        r[f"{prefix}LogGroup"] = {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": f"/aws/lambda/{SERVICE}-{STAGE}-{consumer}"}}
        r[f"{prefix}LambdaFunction"]["DependsOn"] = [f"{prefix}LogGroup"]
        r[f"{prefix}LambdaVersionAbc123"] = {"Type": "AWS::Lambda::Version", "DeletionPolicy": "Retain", "Properties": {
            "FunctionName": {"Ref": f"{prefix}LambdaFunction"}, "CodeSha256": "abc123"}}
        outputs[f"{prefix}LambdaFunctionQualifiedArn"] = {
            "Value": {"Ref": f"{prefix}LambdaVersionAbc123"},
            "Export": {"Name": f"sls-{SERVICE}-{STAGE}-{prefix}LambdaFunctionQualifiedArn"}}
    r["ReprocessLambdaFunction"] = {"Type": "AWS::Lambda::Function", "Properties": {
        "Code": {"S3Bucket": {"Ref": "ServerlessDeploymentBucket"}, "S3Key": f"serverless/{SERVICE}/{STAGE}/1/{SERVICE}.zip"},
        "Handler": "handlers/reprocess.handler", "Runtime": "python3.12",
        "FunctionName": f"{SERVICE}-{STAGE}-reprocess", "Timeout": 900,
        "Environment": {"Variables": reprocess_env},
        "Role": {"Fn::GetAtt": ["IamRoleLambdaExecution", "Arn"]},
    }}
    return {"AWSTemplateFormatVersion": "2010-09-09", "Description": "hand-written stand-in", "Resources": r,
            "Outputs": {**outputs, "UsersTableStreamArn": {"Value": {"Fn::GetAtt": ["UsersTable", "StreamArn"]}}}}
