"""The local platform's IAM decisions, without a server: which action and resource ARN each API
request needs (`iam_resources`), and how a principal's policies answer (`iam_policy`)."""

from __future__ import annotations

from typing import Any

import pytest

from ferry_local.iam_policy import (
    UnsupportedCondition,
    condition_keys,
    denial_message,
    evaluate,
)
from ferry_local.iam_resources import Check, Request, checks

REGION, ACCOUNT = "us-east-1", "123456789012"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Registry"


def _checks(service: str, operation: str, params: dict[str, Any], path: str = "") -> list[Check]:
    return checks(Request(service, operation, params, REGION, ACCOUNT, path=path))


def _pairs(found: list[Check]) -> list[tuple[str, str]]:
    return [(c.action, c.resource) for c in found]


@pytest.mark.parametrize(
    ("service", "operation", "params", "path", "expected"),
    [
        ("dynamodb", "GetItem", {"TableName": "Registry"}, "", [("dynamodb:GetItem", TABLE)]),
        (
            "dynamodb",
            "Query",
            {"TableName": "Registry", "IndexName": "by-stage"},
            "",
            [("dynamodb:Query", f"{TABLE}/index/by-stage")],
        ),
        (
            "dynamodb",
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": "Registry"}},
                    {"ConditionCheck": {"TableName": "Audit"}},
                    {"Update": {"TableName": "Registry"}},
                ]
            },
            "",
            [
                ("dynamodb:PutItem", TABLE),
                ("dynamodb:ConditionCheckItem", TABLE.replace("Registry", "Audit")),
                ("dynamodb:UpdateItem", TABLE),
            ],
        ),
        (
            "dynamodb",
            "BatchWriteItem",
            {"RequestItems": {"Registry": [], "Audit": []}},
            "",
            [
                ("dynamodb:BatchWriteItem", TABLE),
                ("dynamodb:BatchWriteItem", TABLE.replace("Registry", "Audit")),
            ],
        ),
        ("dynamodb", "ListTables", {}, "", [("dynamodb:ListTables", "*")]),
        (
            "sqs",
            "DeleteMessageBatch",
            {"QueueUrl": f"http://127.0.0.1:1/{ACCOUNT}/jobs"},
            "",
            [("sqs:DeleteMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs")],
        ),
        (
            "sqs",
            "GetQueueUrl",
            {"QueueName": "jobs"},
            "",
            [("sqs:GetQueueUrl", f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs")],
        ),
        (
            "sns",
            "Publish",
            {"TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms"},
            "",
            [("sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms")],
        ),
        (
            "states",
            "StartExecution",
            {"stateMachineArn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:retrain"},
            "",
            [("states:StartExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:retrain")],
        ),
        (
            "states",
            "DescribeExecution",
            {"executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:retrain:run-1"},
            "",
            [
                (
                    "states:DescribeExecution",
                    f"arn:aws:states:{REGION}:{ACCOUNT}:execution:retrain:run-1",
                )
            ],
        ),
        (
            "lambda",
            "Invoke",
            {},
            "/2015-03-31/functions/scoring/invocations",
            [("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:scoring")],
        ),
        (
            "lambda",
            "Invoke",
            {"Qualifier": "live"},
            "/2015-03-31/functions/scoring/invocations",
            [("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:scoring:live")],
        ),
        ("lambda", "ListFunctions", {}, "/2015-03-31/functions/", [("lambda:ListFunctions", "*")]),
        (
            "monitoring",
            "DescribeAlarms",
            {"AlarmNames": ["drift"]},
            "",
            [("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:drift")],
        ),
        (
            "monitoring",
            "PutMetricData",
            {"Namespace": "x"},
            "",
            [("cloudwatch:PutMetricData", "*")],
        ),
        (
            "logs",
            "PutLogEvents",
            {"logGroupName": "/aws/lambda/f", "logStreamName": "s"},
            "",
            [
                (
                    "logs:PutLogEvents",
                    f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/f:log-stream:s",
                )
            ],
        ),
        (
            "kms",
            "GenerateDataKey",
            {"KeyId": "1234abcd"},
            "",
            [("kms:GenerateDataKey", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd")],
        ),
        (
            "sts",
            "AssumeRole",
            {"RoleArn": f"arn:aws:iam::{ACCOUNT}:role/admin"},
            "",
            [("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/admin")],
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and v and "/" not in v and ":" not in v else None,
)
def test_each_operation_is_checked_on_the_resource_the_authorization_reference_names(
    service: str, operation: str, params: dict[str, Any], path: str, expected: list[Any]
) -> None:
    assert _pairs(_checks(service, operation, params, path)) == expected


def test_put_events_is_checked_per_entry_with_its_source_in_the_context() -> None:
    found = _checks(
        "events",
        "PutEvents",
        {"Entries": [{"Source": "ferry.registry", "DetailType": "Promoted"}, {"Source": "x"}]},
    )
    bus = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    assert [(c.resource, c.context["events:source"]) for c in found] == [
        (bus, "ferry.registry"),
        (bus, "x"),
    ]


ALLOW_REGISTRY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": TABLE},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::data",
            "Condition": {"StringLike": {"s3:prefix": ["capture/rows/*"]}},
        },
        {
            "Effect": "Allow",
            "Action": "events:PutEvents",
            "Resource": "*",
            "Condition": {"StringEquals": {"events:source": "ferry.registry"}},
        },
    ],
}


@pytest.mark.parametrize(
    ("action", "resource", "context", "allowed"),
    [
        ("dynamodb:GetItem", TABLE, {}, True),
        ("DynamoDB:getitem", TABLE, {}, True),  # actions compare case-insensitively
        ("dynamodb:GetItem", TABLE.replace("Registry", "Audit"), {}, False),
        ("dynamodb:PutItem", TABLE, {}, False),
        ("s3:ListBucket", "arn:aws:s3:::data", {"s3:prefix": "capture/rows/day=1/"}, True),
        ("s3:ListBucket", "arn:aws:s3:::data", {"s3:prefix": "batch/"}, False),
        ("s3:ListBucket", "arn:aws:s3:::data", {}, False),  # a missing key never matches
        ("events:PutEvents", "*", {"events:source": "ferry.registry"}, True),
        ("events:PutEvents", "*", {"events:source": "someone.else"}, False),
    ],
)
def test_allow_needs_action_resource_and_every_condition(
    action: str, resource: str, context: dict[str, str], allowed: bool
) -> None:
    decision = evaluate([ALLOW_REGISTRY], action, resource, context)
    assert decision.allowed is allowed and not decision.explicit_deny


def test_an_explicit_deny_wins_and_not_resource_is_honoured() -> None:
    deny_audit = {
        "Statement": [
            {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "dynamodb:*", "NotResource": TABLE},
        ]
    }
    assert evaluate([deny_audit], "dynamodb:PutItem", TABLE).allowed
    refused = evaluate([deny_audit], "dynamodb:PutItem", TABLE.replace("Registry", "Audit"))
    assert refused.explicit_deny and not refused.allowed
    message = denial_message(
        "arn:aws:sts::1:assumed-role/r/s", "dynamodb:PutItem", "arn:x", refused
    )
    assert "explicit deny" in message


def test_the_denial_names_the_principal_the_action_and_the_resource() -> None:
    decision = evaluate([ALLOW_REGISTRY], "dynamodb:PutItem", TABLE)
    assert denial_message(
        "arn:aws:sts::1:assumed-role/r/s", "dynamodb:PutItem", TABLE, decision
    ) == (
        "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: dynamodb:PutItem on "
        f"resource: {TABLE} because no identity-based policy allows the dynamodb:PutItem action"
    )


def test_an_unknown_condition_operator_is_refused_loudly() -> None:
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
            }
        ]
    }
    assert condition_keys(policy) == {"aws:currenttime"}
    with pytest.raises(UnsupportedCondition, match="DateGreaterThan"):
        evaluate([policy], "s3:GetObject", "arn:aws:s3:::b/k", {"aws:CurrentTime": "x"})
