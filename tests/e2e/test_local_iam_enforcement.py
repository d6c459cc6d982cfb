"""IAM enforcement of the local platform's moto server, service by service: a role allowed on
one table, queue, topic, state machine, function or event bus is allowed there and refused on
its neighbour, with AWS's message naming the action and the resource; SSE-KMS objects need
the KMS permissions S3 uses on the writer's and the reader's behalf; sessions expire.

One moto server in this process, with `moto_hooks` installed exactly as the platform installs
them, and resources created as the platform creates them (its own principal) before the
checks are switched on.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ferry_local import moto_hooks, moto_iam
from ferry_local.principals import Principals, UntrustedService
from ferry_local.resources import EndpointClients

REGION, ACCOUNT = "us-east-1", "123456789012"
LAMBDA = "lambda.amazonaws.com"


def _trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


@dataclass
class World:
    url: str
    principals: Principals
    platform: EndpointClients
    arns: dict[str, str]

    def role(self, name: str, statements: list[dict[str, Any]], service: str = LAMBDA) -> Any:
        """Clients signed as a new role holding `statements` (made while checks are off)."""
        iam = self.platform["iam"]
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust(service))["Role"][
            "Arn"
        ]
        policy = {"Version": "2012-10-17", "Statement": statements}
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        principals = self.principals
        return EndpointClients(self.url, REGION, session=lambda: principals.session(arn, service))


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def _create(c: EndpointClients) -> dict[str, str]:
    """Two of each kind: the one a role is allowed, and its neighbour."""
    arns: dict[str, str] = {}
    for name in ("allowed", "other"):
        arns[f"table-{name}"] = c["dynamodb"].create_table(
            TableName=f"t-{name}",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )["TableDescription"]["TableArn"]
        arns[f"queue-url-{name}"] = c["sqs"].create_queue(QueueName=f"q-{name}")["QueueUrl"]
        arns[f"topic-{name}"] = c["sns"].create_topic(Name=f"topic-{name}")["TopicArn"]
        machine_role = c["iam"].create_role(
            RoleName=f"machine-{name}", AssumeRolePolicyDocument=_trust("states.amazonaws.com")
        )["Role"]["Arn"]
        arns[f"machine-{name}"] = c["stepfunctions"].create_state_machine(
            name=f"m-{name}",
            definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
            roleArn=machine_role,
        )["stateMachineArn"]
        arns[f"function-{name}"] = c["lambda"].create_function(
            FunctionName=f"f-{name}",
            Runtime="python3.12",
            Role=machine_role,
            Handler="index.handler",
            Code={"ZipFile": _zip()},
        )["FunctionArn"]
        arns[f"bus-{name}"] = c["events"].create_event_bus(Name=f"bus-{name}")["EventBusArn"]
    key = c["kms"].create_key(Description="data")["KeyMetadata"]
    arns["key"] = key["Arn"]
    c["s3"].create_bucket(Bucket="encrypted")
    c["s3"].put_bucket_encryption(
        Bucket="encrypted",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key["KeyId"],
                    }
                }
            ]
        },
    )
    c["s3"].put_object(Bucket="encrypted", Key="in/existing.csv", Body=b"a,b\n")
    return arns


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    from moto.moto_api._internal.models import moto_api_backend
    from moto.server import ThreadedMotoServer

    moto_api_backend.reset()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    moto_hooks.install()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        principals = Principals(ACCOUNT, REGION)
        platform = EndpointClients(url, REGION, session=principals.platform_session)
        arns = _create(platform)
        moto_iam.enforcing(True)
        yield World(url, principals, platform, arns)
    finally:
        moto_hooks.uninstall()
        server.stop()
        moto_api_backend.reset()


def _refused(call: Any, action: str, resource: str) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    assert error["Code"] in ("AccessDenied", "AccessDeniedException", "AuthorizationError"), error
    assert f"not authorized to perform: {action} on resource: {resource}" in error["Message"]
    return str(error["Message"])


def test_dynamodb_is_checked_on_the_table(world: World) -> None:
    a = world.arns
    role = world.role(
        "ddb", [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": a["table-allowed"]}]
    )
    role["dynamodb"].put_item(TableName="t-allowed", Item={"pk": {"S": "1"}})
    message = _refused(
        lambda: role["dynamodb"].get_item(TableName="t-other", Key={"pk": {"S": "1"}}),
        "dynamodb:GetItem",
        a["table-other"],
    )
    assert ":assumed-role/ddb/" in message
    _refused(
        lambda: role["dynamodb"].transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t-allowed", "Item": {"pk": {"S": "2"}}}},
                {"Put": {"TableName": "t-other", "Item": {"pk": {"S": "2"}}}},
            ]
        ),
        "dynamodb:PutItem",
        a["table-other"],
    )
    assert "Item" not in role["dynamodb"].get_item(TableName="t-allowed", Key={"pk": {"S": "2"}})


def test_sqs_and_sns_are_checked_on_the_queue_and_the_topic(world: World) -> None:
    a = world.arns
    queue = lambda name: a[f"queue-url-{name}"]  # noqa: E731
    allowed_queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:q-allowed"
    role = world.role(
        "messaging",
        [
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": allowed_queue},
            {"Effect": "Allow", "Action": "sns:Publish", "Resource": a["topic-allowed"]},
        ],
    )
    role["sqs"].send_message(QueueUrl=queue("allowed"), MessageBody="x")
    _refused(
        lambda: role["sqs"].send_message(QueueUrl=queue("other"), MessageBody="x"),
        "sqs:SendMessage",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:q-other",
    )
    role["sns"].publish(TopicArn=a["topic-allowed"], Message="x")
    _refused(
        lambda: role["sns"].publish(TopicArn=a["topic-other"], Message="x"),
        "sns:Publish",
        a["topic-other"],
    )


def test_step_functions_lambda_and_eventbridge_are_checked_on_their_arns(world: World) -> None:
    a = world.arns
    role = world.role(
        "orchestration",
        [
            {
                "Effect": "Allow",
                "Action": "states:StartExecution",
                "Resource": a["machine-allowed"],
            },
            {"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": a["function-allowed"]},
            {"Effect": "Allow", "Action": "events:PutEvents", "Resource": a["bus-allowed"]},
        ],
    )
    role["stepfunctions"].start_execution(stateMachineArn=a["machine-allowed"])
    _refused(
        lambda: role["stepfunctions"].start_execution(stateMachineArn=a["machine-other"]),
        "states:StartExecution",
        a["machine-other"],
    )
    role["lambda"].get_function(FunctionName="f-allowed")
    _refused(
        lambda: role["lambda"].get_function(FunctionName="f-other"),
        "lambda:GetFunction",
        a["function-other"],
    )
    entry = {"Source": "ferry.test", "DetailType": "t", "Detail": "{}"}
    role["events"].put_events(Entries=[{**entry, "EventBusName": "bus-allowed"}])
    _refused(
        lambda: role["events"].put_events(Entries=[{**entry, "EventBusName": "bus-other"}]),
        "events:PutEvents",
        a["bus-other"],
    )


def test_cloudwatch_alarm_writes_are_checked_on_the_alarm_name(world: World) -> None:
    """
    Given a role that may put alarms named `Ferry-local-model-*` (the governance function's
        grant)
    Then it puts (and re-puts) such an alarm, is refused any other name with the alarm's
        ARN in the message, and PutMetricData (no resource-level permission) needs `*`
    """
    prefix = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:Ferry-local-model-"
    role = world.role(
        "alarms",
        [{"Effect": "Allow", "Action": "cloudwatch:PutMetricAlarm", "Resource": f"{prefix}*"}],
    )
    alarm = {
        "Namespace": "Ferry",
        "MetricName": "DriftMaxPSI",
        "Dimensions": [{"Name": "model", "Value": "fraud"}],
        "Statistic": "Maximum",
        "Period": 3600,
        "EvaluationPeriods": 1,
        "Threshold": 0.2,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    for _ in range(2):
        role["cloudwatch"].put_metric_alarm(AlarmName="Ferry-local-model-fraud-drift", **alarm)
    _refused(
        lambda: role["cloudwatch"].put_metric_alarm(AlarmName="Ferry-local-other", **alarm),
        "cloudwatch:PutMetricAlarm",
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:Ferry-local-other",
    )
    _refused(
        lambda: role["cloudwatch"].put_metric_data(
            Namespace="Ferry", MetricData=[{"MetricName": "x", "Value": 1.0}]
        ),
        "cloudwatch:PutMetricData",
        "*",
    )


OBJECTS = {
    "Effect": "Allow",
    "Action": ["s3:PutObject", "s3:GetObject"],
    "Resource": "arn:aws:s3:::encrypted/*",
}


def test_writing_to_an_sse_kms_bucket_needs_generate_data_key_on_its_key(world: World) -> None:
    key = world.arns["key"]
    without = world.role("writer-without-kms", [OBJECTS])
    _refused(
        lambda: without["s3"].put_object(Bucket="encrypted", Key="in/a.csv", Body=b"1"),
        "kms:GenerateDataKey",
        key,
    )
    writer = world.role(
        "writer", [OBJECTS, {"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": key}]
    )
    writer["s3"].put_object(Bucket="encrypted", Key="in/a.csv", Body=b"1")
    # writing is not reading: the object is decrypted only for a principal allowed kms:Decrypt
    _refused(
        lambda: writer["s3"].get_object(Bucket="encrypted", Key="in/a.csv"), "kms:Decrypt", key
    )
    reader = world.role(
        "reader", [OBJECTS, {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key}]
    )
    assert reader["s3"].get_object(Bucket="encrypted", Key="in/a.csv")["Body"].read() == b"1"
    reader["s3"].head_object(Bucket="encrypted", Key="in/a.csv")  # HEAD decrypts nothing


def test_an_s3_refusal_names_the_object(world: World) -> None:
    role = world.role(
        "no-objects", [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]
    )
    _refused(
        lambda: role["s3"].get_object(Bucket="encrypted", Key="in/existing.csv"),
        "s3:GetObject",
        "arn:aws:s3:::encrypted/in/existing.csv",
    )


def test_a_service_session_needs_the_roles_trust_and_expires(world: World) -> None:
    iam = world.platform["iam"]
    arn = iam.create_role(RoleName="short", AssumeRolePolicyDocument=_trust(LAMBDA))["Role"]["Arn"]
    with pytest.raises(UntrustedService, match=r"does not trust states\.amazonaws\.com"):
        world.principals.session(arn, "states.amazonaws.com")
    expired = Principals(ACCOUNT, REGION, session_seconds=-1).session(arn, LAMBDA)
    import boto3

    sts = boto3.client(
        "sts",
        endpoint_url=world.url,
        region_name=REGION,
        aws_access_key_id=expired.access_key_id,
        aws_secret_access_key=expired.secret_access_key,
        aws_session_token=expired.session_token,
    )
    with pytest.raises(ClientError, match="ExpiredToken"):
        sts.get_caller_identity()


def test_a_compressed_request_is_checked_on_the_bytes_that_were_signed(world: World) -> None:
    """botocore gzips a large PutMetricData body; the signature covers the compressed bytes."""
    data = [{"MetricName": f"m{i}", "Value": float(i)} for i in range(1000)]
    allowed = world.role(
        "metrics", [{"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"}]
    )
    allowed["cloudwatch"].put_metric_data(Namespace="Ferry/Test", MetricData=data)
    refused = world.role(
        "no-metrics", [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]
    )
    _refused(
        lambda: refused["cloudwatch"].put_metric_data(Namespace="Ferry/Test", MetricData=data),
        "cloudwatch:PutMetricData",
        "*",
    )


def test_head_bucket_is_authorized_as_list_bucket(world: World) -> None:
    lister = world.role(
        "lister",
        [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::encrypted"}],
    )
    lister["s3"].head_bucket(Bucket="encrypted")


def test_requests_with_unknown_credentials_are_refused(world: World) -> None:
    import boto3

    anyone = boto3.client(
        "dynamodb",
        endpoint_url=world.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(ClientError, match=r"InvalidClientTokenId|security token"):
        anyone.list_tables()


def test_a_function_runs_with_its_roles_session_and_a_fresh_sandbox_before_it_expires(
    tmp_path: Any,
) -> None:
    """
    Given a function registered with its execution role
    When it is invoked, and again once its session is within minutes of expiring
    Then its process holds that role's credentials (not the runtime's), and the second
        invocation runs in a new process with a new session, as Lambda retires a sandbox
    """
    from datetime import UTC, datetime, timedelta

    from ferry_local.lambda_runtime import FunctionRuntime
    from ferry_local.moto_iam import SessionCredentials

    (tmp_path / "handler.py").write_text(
        "import os\n"
        "def lambda_handler(event, context):\n"
        "    return {'key': os.environ['AWS_ACCESS_KEY_ID'], 'pid': os.getpid()}\n"
    )
    issued: list[tuple[str, str]] = []

    def credentials(role_arn: str, service: str) -> SessionCredentials:
        issued.append((role_arn, service))
        # the first session is about to expire; the next one is good for an hour
        minutes = 1 if len(issued) == 1 else 60
        now = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as moto's sessions keep it
        expiration = now + timedelta(minutes=minutes)
        return SessionCredentials(f"ASIA{len(issued)}", "secret", "token", expiration)

    runtime = FunctionRuntime(
        tmp_path, base_environment={"AWS_ACCESS_KEY_ID": "runtime"}, credentials=credentials
    )
    role = f"arn:aws:iam::{ACCOUNT}:role/fn-role"
    runtime.register("fn", tmp_path, {}, role_arn=role)
    try:
        first = json.loads(runtime.invoke("fn", {})[0])
        second = json.loads(runtime.invoke("fn", {})[0])
        third = json.loads(runtime.invoke("fn", {})[0])
    finally:
        runtime.close()
    assert issued == [(role, LAMBDA), (role, LAMBDA)]
    assert (first["key"], second["key"], third["key"]) == ("ASIA1", "ASIA2", "ASIA2")
    assert first["pid"] != second["pid"] == third["pid"]


def test_assume_role_needs_the_callers_permission_and_the_roles_trust(world: World) -> None:
    iam = world.platform["iam"]
    account_trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    person = iam.create_role(RoleName="person", AssumeRolePolicyDocument=account_trust)
    service_only = iam.create_role(RoleName="service-only", AssumeRolePolicyDocument=_trust(LAMBDA))
    caller = world.role(
        "assumer", [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]
    )
    caller["sts"].assume_role(RoleArn=person["Role"]["Arn"], RoleSessionName="someone")
    message = _refused(
        lambda: caller["sts"].assume_role(
            RoleArn=service_only["Role"]["Arn"], RoleSessionName="someone"
        ),
        "sts:AssumeRole",
        service_only["Role"]["Arn"],
    )
    assert "trust policy" in message
    nobody = world.role(
        "no-assume", [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]
    )
    _refused(
        lambda: nobody["sts"].assume_role(RoleArn=person["Role"]["Arn"], RoleSessionName="x1"),
        "sts:AssumeRole",
        person["Role"]["Arn"],
    )
