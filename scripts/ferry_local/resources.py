"""Create the synthesized template's resources in moto, through the AWS API, in dependency order.

One creator per resource type (`CREATORS`), dispatched from the template: nothing here lists
Ferry's buckets or tables, so resources added to the stack appear locally without a change here.
moto's CloudFormation is not used: it skips API Gateway v2 and alarms, ignores S3 versioning and
hangs on CDK's S3-notification custom resource. Types the platform serves itself (the HTTP API)
or that moto cannot enforce (resource policies: bucket, queue, topic and Lambda permissions) are
reported as skipped. Roles get their policies (AWS::IAM::Policy, AWS::IAM::ManagedPolicy, inline
`Policies`, `ManagedPolicyArns`): the platform authorizes every request against them.
State machines, rules and alarms are created by `workflows.create_workflows` at the end.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from ferry_local import roles
from ferry_local.lambda_runtime import DEFAULT_HANDLER, FunctionRuntime
from ferry_local.moto_iam import SessionCredentials
from ferry_local.template import REPO_ROOT, Resolver, SynthesizedStack, TemplateError

Outputs = dict[str, Any]

# Resource types with nothing to create locally, and why (reported by `ferry local up`).
NOT_EMULATED: dict[str, str] = {
    "AWS::S3::BucketPolicy": "moto does not enforce bucket policies",
    "AWS::SQS::QueuePolicy": "moto does not enforce queue policies",
    "AWS::SNS::TopicPolicy": "moto does not enforce topic policies",
    "AWS::KMS::Alias": "keys are addressed by id locally",
    "AWS::Lambda::Permission": "moto does not enforce resource policies",
    "AWS::Lambda::EventInvokeConfig": "asynchronous retries are not emulated",
    "AWS::ApiGatewayV2::Api": "served by the local HTTP API (http_api.py)",
    "AWS::ApiGatewayV2::Stage": "served by the local HTTP API (http_api.py)",
    "AWS::ApiGatewayV2::Route": "served by the local HTTP API (http_api.py)",
    "AWS::ApiGatewayV2::Integration": "served by the local HTTP API (http_api.py)",
    "AWS::ApiGatewayV2::Authorizer": "the local HTTP API does not authenticate",
    "AWS::CloudWatch::Dashboard": "dashboards are not rendered locally",
    "AWS::CDK::Metadata": "CDK bookkeeping",
    "Custom::LogRetention": "log retention is not emulated",
    "AWS::SSM::Parameter": "not needed by the platform",
    "AWS::EventSchemas::Registry": "moto has no schema registry (the schemas document events)",
    "AWS::EventSchemas::Schema": "moto has no schema registry (the schemas document events)",
}
# Created by workflows.create_workflows.
WORKFLOW_TYPES = frozenset(
    {
        "AWS::StepFunctions::StateMachine",
        "AWS::Events::Rule",
        "AWS::Events::EventBus",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::CompositeAlarm",
    }
)


class EndpointClients:
    """boto3 clients for one endpoint, created on first use: `clients["s3"]`.

    `session` gives the credentials to sign with (a role session, renewed by its issuer);
    a client is made again when they change. Without it, fixed placeholder credentials:
    right only while the endpoint does not authenticate."""

    def __init__(
        self,
        endpoint_url: str | None,
        region: str = "us-east-1",
        session: Callable[[], SessionCredentials] | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.session = session
        self._clients: dict[str, tuple[Any, BaseClient]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, service: str) -> BaseClient:
        held = self.session() if self.session is not None else None
        with self._lock:
            made = self._clients.get(service)
            if made is None or made[0] != held:
                keys = (
                    (held.access_key_id, held.secret_access_key, held.session_token)
                    if held is not None
                    else ("testing", "testing", "testing")
                )
                client = boto3.client(
                    service,  # type: ignore[call-overload]
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=keys[0],
                    aws_secret_access_key=keys[1],
                    aws_session_token=keys[2],
                    config=Config(retries={"max_attempts": 2}, read_timeout=900),
                )
                made = self._clients[service] = (held, client)
            return made[1]


@dataclass
class BuildReport:
    """What was created (logical id → physical id), and what was skipped with the reason."""

    created: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # said loudly by `ferry local up`
    functions: dict[str, str] = field(default_factory=dict)  # function name → source folder


@dataclass
class _Build:
    resolver: Resolver
    clients: Any
    runtime: FunctionRuntime | None
    stack: SynthesizedStack | None
    repo_root: Path
    report: BuildReport

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.resolver.resolve(self.resolver.resources[logical_id].get("Properties", {}))


def create_resources(
    template: dict[str, Any],
    resolver: Resolver,
    clients: Any,
    *,
    runtime: FunctionRuntime | None = None,
    stack: SynthesizedStack | None = None,
    repo_root: Path = REPO_ROOT,
    report: BuildReport | None = None,
    types: Collection[str] | None = None,
) -> Outputs:
    """Create every resource of `template` in the endpoint `clients` point at; return outputs.

    With `runtime` and `stack` (for the asset manifest), each function is also registered with
    the runtime, so invoking it runs its real handler. `types` limits what is created to those
    resource types (a test that needs only the buckets and tables); the rest is skipped.
    """
    build = _Build(resolver, clients, runtime, stack, repo_root, report or BuildReport())
    resources = template.get("Resources", {})
    order = TopologicalSorter({lid: resolver.dependencies(lid) for lid in resources})
    for logical_id in order.static_order():
        resource = resources[logical_id]
        rtype = resource["Type"]
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            build.report.skipped[logical_id] = "its condition is false"
            continue
        if types is not None and rtype not in types:
            build.report.skipped[logical_id] = "not requested"
            continue
        creator = CREATORS.get(rtype)
        if creator is not None:
            try:
                creator(build, logical_id)
            except TemplateError:
                raise
            except Exception as exc:
                raise TemplateError(f"creating {logical_id} ({rtype}) failed: {exc}") from exc
            build.report.created[logical_id] = resolver.physical_id(logical_id)
        elif rtype in WORKFLOW_TYPES:
            continue
        else:
            build.report.skipped[logical_id] = NOT_EMULATED.get(rtype, f"{rtype} is not emulated")
    if types is None or WORKFLOW_TYPES & set(types):
        _create_workflows(template, resolver, clients, build.report)
    return {
        output_id: resolver.resolve(output["Value"])
        for output_id, output in template.get("Outputs", {}).items()
        if "Condition" not in output or resolver.condition(output["Condition"])
    }


def _create_workflows(
    template: dict[str, Any], resolver: Resolver, clients: Any, report: BuildReport
) -> None:
    from ferry_local.workflows import create_workflows

    create_workflows(template, resolver, clients)
    for lid, res in template.get("Resources", {}).items():
        if res["Type"] in WORKFLOW_TYPES:
            report.created[lid] = resolver.physical_id(lid)


# ------------------------------------------------------------------------------ creators


def _tags(props: dict[str, Any]) -> list[dict[str, str]]:
    tags = props.get("Tags") or []
    if isinstance(tags, dict):
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in tags]


def _kms_key(b: _Build, lid: str) -> None:
    props = b.props(lid)
    key = b.clients["kms"].create_key(
        Description=props.get("Description", lid),
        Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(props)],
    )["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        b.clients["kms"].enable_key_rotation(KeyId=key["KeyId"])
    b.resolver.set(
        lid,
        physical_id=key["KeyId"],
        ref=key["KeyId"],
        arn=key["Arn"],
        attributes={"KeyId": key["KeyId"]},
    )


def _bucket(b: _Build, lid: str) -> None:
    s3 = b.clients["s3"]
    props = b.props(lid)
    name = b.resolver.physical_id(lid)
    args: dict[str, Any] = {"Bucket": name}
    if b.resolver.region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": b.resolver.region}
    if _is_true(props.get("ObjectLockEnabled")):
        args["ObjectLockEnabledForBucket"] = True
    s3.create_bucket(**args)
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration=props["VersioningConfiguration"]
        )
    lock = props.get("ObjectLockConfiguration")
    if lock and lock.get("Rule"):
        s3.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": lock["Rule"]},
        )
    if "BucketEncryption" in props:
        rules = [
            {_SSE_KEYS.get(k, k): v for k, v in rule.items()}
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    if props.get("Tags"):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(props)})
    if "NotificationConfiguration" in props:
        _put_notifications(b, name, _cfn_notifications(props["NotificationConfiguration"]))
    if "LifecycleConfiguration" in props:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration=_cfn_lifecycle(props["LifecycleConfiguration"])
        )


# AWS::S3::Bucket's encryption rule vs the S3 API's.
_SSE_KEYS = {"ServerSideEncryptionByDefault": "ApplyServerSideEncryptionByDefault"}


def _cfn_lifecycle(config: dict[str, Any]) -> dict[str, Any]:
    """AWS::S3::Bucket's LifecycleConfiguration (the shape infra/retention.py emits) → the S3
    API's; stored, not applied: moto expires nothing (README "Retention")."""
    rules = []
    for rule in config["Rules"]:
        api: dict[str, Any] = {
            "Status": rule["Status"],
            "Filter": {"Prefix": rule.get("Prefix", "")},
        }
        if "Id" in rule:
            api["ID"] = rule["Id"]
        if "ExpirationInDays" in rule:
            api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
        for key, count in (
            ("NoncurrentVersionExpiration", "NoncurrentDays"),
            ("AbortIncompleteMultipartUpload", "DaysAfterInitiation"),
        ):
            if key in rule:
                api[key] = {count: int(rule[key][count])}
        rules.append(api)
    return {"Rules": rules}


def _cfn_notifications(config: dict[str, Any]) -> dict[str, Any]:
    """AWS::S3::Bucket's NotificationConfiguration → the S3 API shape."""
    out: dict[str, Any] = {}
    for cfn, api, target in (
        ("LambdaConfigurations", "LambdaFunctionConfigurations", ("Function", "LambdaFunctionArn")),
        ("QueueConfigurations", "QueueConfigurations", ("Queue", "QueueArn")),
        ("TopicConfigurations", "TopicConfigurations", ("Topic", "TopicArn")),
    ):
        for item in config.get(cfn, []):
            entry = {target[1]: item[target[0]], "Events": [item["Event"]]}
            rules = item.get("Filter", {}).get("S3Key", {}).get("Rules")
            if rules:
                entry["Filter"] = {"Key": {"FilterRules": rules}}
            out.setdefault(api, []).append(entry)
    if config.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        out["EventBridgeConfiguration"] = {}
    return out


def _put_notifications(b: _Build, bucket: str, config: dict[str, Any]) -> None:
    b.clients["s3"].put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=config, SkipDestinationValidation=True
    )


def _bucket_notifications(b: _Build, lid: str) -> None:
    """CDK's Custom::S3BucketNotifications: its properties are already the S3 API's shape."""
    props = b.props(lid)
    config = props.get("NotificationConfiguration", {})
    _put_notifications(b, props["BucketName"], {k: v for k, v in config.items() if v})


def _table(b: _Build, lid: str) -> None:
    props = b.props(lid)
    name = b.resolver.physical_id(lid)
    ddb = b.clients["dynamodb"]
    billing = props.get("BillingMode", "PROVISIONED")
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    throughput = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    if billing == "PROVISIONED":
        args["ProvisionedThroughput"] = props.get("ProvisionedThroughput", throughput)
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = []
        for index in props.get(index_kind, []):
            entry = {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
            if index_kind == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                entry["ProvisionedThroughput"] = index.get("ProvisionedThroughput", throughput)
            indexes.append(entry)
        if indexes:
            args[index_kind] = indexes
    stream = props.get("StreamSpecification")
    if stream:
        args["StreamSpecification"] = {"StreamEnabled": True, **stream}
    if props.get("Tags"):
        args["Tags"] = _tags(props)
    table = ddb.create_table(**args)["TableDescription"]
    attributes = {"Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    b.resolver.set(lid, arn=table["TableArn"], attributes=attributes)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DelaySeconds",
    "FifoQueue",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "KmsMasterKeyId",
    "SqsManagedSseEnabled",
)


def _queue(b: _Build, lid: str) -> None:
    props = b.props(lid)
    attributes = {k: _attr(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
    if "RedrivePolicy" in props:
        attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
    if "RedriveAllowPolicy" in props:
        attributes["RedriveAllowPolicy"] = json.dumps(props["RedriveAllowPolicy"])
    args: dict[str, Any] = {"QueueName": b.resolver.physical_id(lid), "Attributes": attributes}
    if props.get("Tags"):
        args["tags"] = {t["Key"]: t["Value"] for t in _tags(props)}
    url = b.clients["sqs"].create_queue(**args)["QueueUrl"]
    b.resolver.set(lid, ref=url, attributes={"QueueUrl": url})


def _attr(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _topic(b: _Build, lid: str) -> None:
    props = b.props(lid)
    attributes = {
        k: _attr(props[k])
        for k in ("DisplayName", "FifoTopic", "ContentBasedDeduplication", "KmsMasterKeyId")
        if k in props
    }
    arn = b.clients["sns"].create_topic(
        Name=b.resolver.physical_id(lid), Attributes=attributes, Tags=_tags(props)
    )["TopicArn"]
    b.resolver.set(lid, ref=arn, arn=arn)
    for sub in props.get("Subscription", []):
        b.clients["sns"].subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])


def _subscription(b: _Build, lid: str) -> None:
    props = b.props(lid)
    attributes = {
        k: json.dumps(props[k]) if isinstance(props[k], dict) else _attr(props[k])
        for k in ("FilterPolicy", "RawMessageDelivery", "RedrivePolicy", "FilterPolicyScope")
        if k in props
    }
    arn = b.clients["sns"].subscribe(
        TopicArn=props["TopicArn"],
        Protocol=props["Protocol"],
        Endpoint=props.get("Endpoint", ""),
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    b.resolver.set(lid, ref=arn, arn=arn)


def _log_group(b: _Build, lid: str) -> None:
    b.clients["logs"].create_log_group(logGroupName=b.resolver.physical_id(lid))


def _placeholder_zip(note: str) -> bytes:
    """moto needs code bytes; the real code runs in the local runtime (lambda_runtime.py)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("README.txt", note)
    return buffer.getvalue()


def _function(b: _Build, lid: str) -> None:
    raw = b.resolver.resources[lid].get("Properties", {})
    props = b.props(lid)
    name = b.resolver.physical_id(lid)
    env = {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}
    source = _function_source(b, lid, raw, name)
    package = props.get("PackageType", "Zip")
    args: dict[str, Any] = {
        "FunctionName": name,
        "Role": props["Role"],
        "Description": props.get("Description", ""),
        "Timeout": int(props.get("Timeout", 3)),
        "MemorySize": int(props.get("MemorySize", 128)),
        "Environment": {"Variables": env},
        "PackageType": package,
        "Tags": {t["Key"]: t["Value"] for t in _tags(props)},
    }
    if package == "Image":
        args["Code"] = {"ImageUri": props["Code"]["ImageUri"]}
    else:
        args["Runtime"] = props.get("Runtime", "python3.11")
        args["Handler"] = props.get("Handler", DEFAULT_HANDLER)
        note = f"{name} runs in-process from {source[0] if source else 'nowhere'}"
        args["Code"] = {"ZipFile": _placeholder_zip(note)}
    b.clients["lambda"].create_function(**args)
    if source is not None and b.runtime is not None:
        folder, handler = source
        b.runtime.register(
            name,
            folder,
            env,
            handler,
            memory_mb=args["MemorySize"],
            timeout_seconds=float(args["Timeout"]),
            role_arn=props["Role"],
        )
        b.report.functions[name] = str(folder)


def _function_source(
    b: _Build, lid: str, raw: dict[str, Any], name: str
) -> tuple[Path, str] | None:
    inline = raw.get("Code", {}).get("ZipFile")
    if inline is not None and str(raw.get("Runtime", "")).startswith("python"):
        folder = b.repo_root / ".ferry" / "functions" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.py").write_text(str(b.resolver.resolve(inline)))
        return folder, raw.get("Handler", "index.handler")
    if b.stack is None:
        return None
    return b.stack.function_source(raw, b.repo_root)


def _version(b: _Build, lid: str) -> None:
    props = b.props(lid)
    published = b.clients["lambda"].publish_version(FunctionName=props["FunctionName"])
    b.resolver.set(
        lid,
        ref=published["FunctionArn"],
        arn=published["FunctionArn"],
        attributes={"Version": published["Version"]},
    )


def _alias(b: _Build, lid: str) -> None:
    props = b.props(lid)
    alias = b.clients["lambda"].create_alias(
        FunctionName=props["FunctionName"],
        Name=props["Name"],
        FunctionVersion=props.get("FunctionVersion", "$LATEST"),
    )
    b.resolver.set(lid, ref=alias["AliasArn"], arn=alias["AliasArn"])


def _event_source_mapping(b: _Build, lid: str) -> None:
    props = b.props(lid)
    args = {
        k: props[k]
        for k in (
            "EventSourceArn",
            "FunctionName",
            "BatchSize",
            "Enabled",
            "StartingPosition",
            "MaximumBatchingWindowInSeconds",
            "FunctionResponseTypes",
        )
        if k in props
    }
    if str(args.get("EventSourceArn", "")).startswith("arn:aws:sqs:"):
        # moto would deliver each message once, at send time, and never retry it: the
        # platform's pollers (local/pollers.py) deliver SQS messages instead, as Lambda does.
        args["Enabled"] = False
    esm = b.clients["lambda"].create_event_source_mapping(**args)
    b.resolver.set(lid, ref=esm["UUID"])


Creator = Callable[[_Build, str], None]

CREATORS: dict[str, Creator] = {
    "AWS::KMS::Key": _kms_key,
    "AWS::S3::Bucket": _bucket,
    "Custom::S3BucketNotifications": _bucket_notifications,
    "AWS::DynamoDB::Table": _table,
    "AWS::SQS::Queue": _queue,
    "AWS::SNS::Topic": _topic,
    "AWS::SNS::Subscription": _subscription,
    "AWS::IAM::Role": roles.create_role,
    "AWS::IAM::Policy": roles.create_policy,
    "AWS::IAM::ManagedPolicy": roles.create_managed_policy,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::Lambda::Function": _function,
    "AWS::Lambda::Version": _version,
    "AWS::Lambda::Alias": _alias,
    "AWS::Lambda::EventSourceMapping": _event_source_mapping,
}


def _is_true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"
