"""Which IAM action, on which resource ARN, an AWS API request needs: the authorization step
moto leaves out for JSON and query services.

moto 5.2.5 asks a response class's `_determine_resource()` for the resource to check, and only
SQS, IAM and STS define one, so a DynamoDB GetItem is checked against resource `*` and any
policy naming a table either allows everything or nothing. `checks(request)` answers as the
AWS Service Authorization Reference defines each action's resource type:

- DynamoDB: table ARN, `table/T/index/I` for Query/Scan on an index, the stream ARN for stream
  reads; BatchGetItem/BatchWriteItem check every table named; TransactWriteItems and
  TransactGetItems are authorized per item as PutItem/UpdateItem/DeleteItem/
  ConditionCheckItem/GetItem (the DynamoDB guide's "Using IAM with transactions").
- SQS: the queue ARN (batch operations as their single-message action); SNS: the topic ARN.
- Step Functions: the state machine, execution or activity ARN the operation names.
- Lambda: the function ARN (with its qualifier when one is given); Invoke is
  `lambda:InvokeFunction`.
- EventBridge: PutEvents on each entry's event bus, with `events:source` and
  `events:detail-type` in the request context; rule operations on the rule ARN.
- CloudWatch (signing name `monitoring`): alarm operations on the alarm ARN; PutMetricData,
  GetMetricData, GetMetricStatistics and ListMetrics support no resource (`*`), as in AWS.
- CloudWatch Logs: the log group (or log stream) ARN. KMS: the key ARN (aliases resolved).
- STS AssumeRole: the role ARN; IAM: the role, user or policy ARN named.

Any other operation is checked against `*`: a policy naming resources does not allow it,
which errs on the side of refusing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

# The request context keys this module supplies (lower-cased); policies using others are
# reported by the platform as not evaluated locally.
SUPPORTED_CONDITION_KEYS = frozenset(
    {
        "events:source",
        "events:detail-type",
        "s3:prefix",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:requestedregion",
    }
)
# Signing name (the credential scope's service) → IAM service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch"}


@dataclass(frozen=True)
class Check:
    """One authorization: `action` on `resource`, with the request's condition context."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """What the authorization needs of one API request."""

    service: str  # the signing name: dynamodb, sqs, monitoring, states, lambda, ...
    operation: str  # the API operation: GetItem, Invoke, ...
    params: Mapping[str, Any]  # the parsed request parameters
    region: str
    account: str
    path: str = ""  # the URL path (REST services: Lambda)
    resolve_kms_key: Callable[[str], str] | None = None  # alias or id → key ARN


def checks(request: Request) -> list[Check]:
    """The authorizations `request` needs, in AWS's terms (deduplicated, in order)."""
    rule = _SERVICES.get(request.service)
    prefix = IAM_PREFIX.get(request.service, request.service)
    found = rule(request) if rule else [Check(f"{prefix}:{request.operation}", "*")]
    unique: list[Check] = []
    for check in found:
        if check not in unique:
            unique.append(check)
    return unique


def _arn(r: Request, service: str, resource: str, *, region: bool = True) -> str:
    return f"arn:aws:{service}:{r.region if region else ''}:{r.account}:{resource}"


# ---------------------------------------------------------------- DynamoDB

_TRANSACT_WRITE = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _dynamodb(r: Request) -> list[Check]:
    p, op = r.params, r.operation

    def table(name: str) -> str:
        return name if name.startswith("arn:") else _arn(r, "dynamodb", f"table/{name}")

    if op in ("BatchGetItem", "BatchWriteItem"):
        return [Check(f"dynamodb:{op}", table(t)) for t in p.get("RequestItems") or {}]
    if op == "TransactWriteItems":
        out = []
        for item in p.get("TransactItems") or []:
            for kind, body in item.items():
                out.append(Check(f"dynamodb:{_TRANSACT_WRITE[kind]}", table(body["TableName"])))
        return out
    if op == "TransactGetItems":
        return [
            Check("dynamodb:GetItem", table(item["Get"]["TableName"]))
            for item in p.get("TransactItems") or []
        ]
    if p.get("StreamArn"):
        return [Check(f"dynamodb:{op}", str(p["StreamArn"]))]
    name = p.get("TableName") or p.get("ResourceArn")
    if not name:
        return [Check(f"dynamodb:{op}", "*")]
    resource = table(str(name))
    if op in ("Query", "Scan") and p.get("IndexName"):
        resource += f"/index/{p['IndexName']}"
    return [Check(f"dynamodb:{op}", resource)]


# ---------------------------------------------------------------- SQS and SNS

_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs(r: Request) -> list[Check]:
    p = r.params
    action = "sqs:" + _SQS_BATCH.get(r.operation, r.operation)
    url = p.get("QueueUrl")
    if url:
        account, name = str(url).rstrip("/").split("/")[-2:]
        return [Check(action, f"arn:aws:sqs:{r.region}:{account}:{name}")]
    if p.get("QueueName"):
        account = p.get("QueueOwnerAWSAccountId") or r.account
        return [Check(action, f"arn:aws:sqs:{r.region}:{account}:{p['QueueName']}")]
    return [Check(action, "*")]


def _sns(r: Request) -> list[Check]:
    p = r.params
    action = "sns:" + ("Publish" if r.operation == "PublishBatch" else r.operation)
    arn = p.get("TopicArn") or p.get("TargetArn") or p.get("ResourceArn")
    if not arn and p.get("SubscriptionArn"):
        arn = str(p["SubscriptionArn"]).rsplit(":", 1)[0]
    if not arn and r.operation == "CreateTopic":
        arn = _arn(r, "sns", str(p.get("Name")))
    return [Check(action, str(arn) if arn else "*")]


# ---------------------------------------------------------------- Step Functions


def _states(r: Request) -> list[Check]:
    p, op = r.params, r.operation
    for key in ("executionArn", "stateMachineArn", "activityArn", "resourceArn"):
        if p.get(key):
            return [Check(f"states:{op}", str(p[key]))]
    if op == "CreateStateMachine":
        return [Check(f"states:{op}", _arn(r, "states", f"stateMachine:{p.get('name')}"))]
    if op == "CreateActivity":
        return [Check(f"states:{op}", _arn(r, "states", f"activity:{p.get('name')}"))]
    return [Check(f"states:{op}", "*")]


# ---------------------------------------------------------------- Lambda

_LAMBDA_ACTIONS = {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction"}


def _lambda(r: Request) -> list[Check]:
    action = "lambda:" + _LAMBDA_ACTIONS.get(r.operation, r.operation)
    parts = [unquote(part) for part in r.path.strip("/").split("/")]
    if len(parts) >= 3 and parts[1] == "event-source-mappings":
        return [Check(action, _arn(r, "lambda", f"event-source-mapping:{parts[2]}"))]
    if len(parts) < 3 or parts[1] != "functions":
        return [Check(action, "*")]
    name = parts[2]
    arn = name if name.startswith("arn:") else _arn(r, "lambda", f"function:{name}")
    qualifier = r.params.get("Qualifier")
    if r.operation.startswith("Invoke") and qualifier and arn.count(":") == 6:
        arn += f":{qualifier}"
    return [Check(action, arn)]


# ---------------------------------------------------------------- EventBridge


def _bus_arn(r: Request, bus: Any) -> str:
    bus = str(bus or "default")
    return bus if bus.startswith("arn:") else _arn(r, "events", f"event-bus/{bus}")


def _events(r: Request) -> list[Check]:
    p, op = r.params, r.operation
    if op == "PutEvents":
        return [
            Check(
                "events:PutEvents",
                _bus_arn(r, entry.get("EventBusName")),
                {
                    "events:source": entry.get("Source"),
                    "events:detail-type": entry.get("DetailType"),
                },
            )
            for entry in p.get("Entries") or []
        ]
    rule = p.get("Rule") or (p.get("Name") if "Rule" in op else None)
    if rule:
        bus = str(p.get("EventBusName") or "default").rsplit("/", 1)[-1]
        path = f"rule/{rule}" if bus == "default" else f"rule/{bus}/{rule}"
        return [Check(f"events:{op}", _arn(r, "events", path))]
    if op.endswith("EventBus") and p.get("Name"):
        return [Check(f"events:{op}", _bus_arn(r, p["Name"]))]
    return [Check(f"events:{op}", "*")]


# ---------------------------------------------------------------- CloudWatch and Logs

_NO_RESOURCE_METRIC_OPERATIONS = {
    "PutMetricData",
    "GetMetricData",
    "GetMetricStatistics",
    "ListMetrics",
}


def _cloudwatch(r: Request) -> list[Check]:
    p, op = r.params, r.operation
    action = f"cloudwatch:{op}"
    if op in _NO_RESOURCE_METRIC_OPERATIONS:
        return [Check(action, "*")]
    names = list(p.get("AlarmNames") or []) + ([p["AlarmName"]] if p.get("AlarmName") else [])
    if names:
        return [Check(action, _arn(r, "cloudwatch", f"alarm:{name}")) for name in names]
    if "Alarm" in op:
        return [Check(action, _arn(r, "cloudwatch", "alarm:*"))]
    return [Check(action, "*")]


def _logs(r: Request) -> list[Check]:
    p, op = r.params, r.operation
    group = p.get("logGroupName")
    if not group:
        return [Check(f"logs:{op}", "*")]
    resource = f"log-group:{group}"
    if p.get("logStreamName"):
        resource += f":log-stream:{p['logStreamName']}"
    return [Check(f"logs:{op}", _arn(r, "logs", resource))]


# ---------------------------------------------------------------- KMS, STS, IAM


def _kms(r: Request) -> list[Check]:
    key = r.params.get("KeyId") or r.params.get("TargetKeyId")
    if not key:
        return [Check(f"kms:{r.operation}", "*")]
    return [Check(f"kms:{r.operation}", kms_key_arn(r, str(key)))]


def kms_key_arn(r: Request, key: str) -> str:
    """A key id, key ARN, alias name or alias ARN → the key's ARN."""
    if key.startswith("arn:") and ":key/" in key:
        return key
    if r.resolve_kms_key is not None and (key.startswith("alias/") or ":alias/" in key):
        return r.resolve_kms_key(key)
    return _arn(r, "kms", f"key/{key}")


def _sts(r: Request) -> list[Check]:
    role = r.params.get("RoleArn")
    return [Check(f"sts:{r.operation}", str(role) if role else "*")]


def _iam(r: Request) -> list[Check]:
    p = r.params
    for key, kind in (("RoleName", "role"), ("UserName", "user")):
        if p.get(key):
            return [Check(f"iam:{r.operation}", _arn(r, "iam", f"{kind}/{p[key]}", region=False))]
    if p.get("PolicyArn"):
        return [Check(f"iam:{r.operation}", str(p["PolicyArn"]))]
    return [Check(f"iam:{r.operation}", "*")]


_SERVICES: dict[str, Callable[[Request], list[Check]]] = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "sns": _sns,
    "states": _states,
    "lambda": _lambda,
    "events": _events,
    "monitoring": _cloudwatch,
    "logs": _logs,
    "kms": _kms,
    "sts": _sts,
    "iam": _iam,
}
