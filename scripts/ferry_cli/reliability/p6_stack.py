"""Property 6: the stack is locked down, on both synthesized templates (dev and prod).

Read from the cloud assembly `cdk synth` writes (templates, construct paths, cdk-nag's
validation report), never from the CDK constructs, so what is checked is what deploys:

- every API route has an authorizer (IAM, JWT or a Lambda authorizer);
- every Lambda function has a role of its own (no role shared by two functions);
- the scoring role (the role of the function the API integrates) cannot write the registry
  table, cannot delete model object versions and cannot write the model bucket, whatever the
  form of the grant (`*`, `dynamodb:*Item`, `s3:Put*`, NotAction, a resource `*`);
- no Allow statement has a wildcard action or resource without a cdk-nag acknowledgement
  (infra/nag.py) on that very policy that names it and gives a reason;
- every bucket is encrypted, has a TLS-only policy (deny `s3:*` without aws:SecureTransport on
  the bucket and its objects) and blocks all public access;
- in environments whose removal policy is `retain` (prod), every bucket and table is retained
  (DeletionPolicy and UpdateReplacePolicy); every table has point-in-time recovery;
- every function with an asynchronous input (S3, EventBridge, SNS, ... invoking it) has an
  on-failure destination or a DLQ for the invoked qualifier, and every function fed by a queue
  or stream has a redrive DLQ on the queue or an on-failure destination on the mapping;
- cdk-nag AwsSolutions and Serverless packs: 0 unacknowledged findings, synthesis succeeded.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry_cli.reliability.core import Mode, PropertyResult, prop

REPO_ROOT = Path(__file__).resolve().parents[3]
MIN_REASON = 40  # characters of a written reason for an acknowledged finding

# Services whose Lambda invocations are asynchronous (the function's failure needs a place).
ASYNC_PRINCIPALS = (
    "s3.amazonaws.com",
    "events.amazonaws.com",
    "sns.amazonaws.com",
    "logs.amazonaws.com",
    "ses.amazonaws.com",
    "iot.amazonaws.com",
    "config.amazonaws.com",
    "lambda.alarms.cloudwatch.amazonaws.com",
    "codecommit.amazonaws.com",
)
# What the scoring role must never be able to do, on which resource.
REGISTRY_WRITES = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
    "dynamodb:RestoreTableToPointInTime",
    "dynamodb:ImportTable",
)
MODEL_BUCKET_WRITES = (
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteBucket",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutReplicationConfiguration",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:RestoreObject",
    "s3:BypassGovernanceRetention",
    "s3:PutBucketObjectLockConfiguration",
)


@dataclass
class Assembly:
    """What one `cdk synth` of the app produced, per environment."""

    templates: dict[str, dict[str, Any]]
    paths: dict[str, dict[str, str]]  # env → logical id → construct path
    report: dict[str, Any]
    validation_error: str | None
    retained: set[str]  # environments whose removal policy is `retain`

    def copy(self) -> Assembly:
        return copy.deepcopy(self)


def repo_on_path() -> None:
    """`app` and `infra` live at the repository root, outside the installed packages."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def load_assembly(outdir: Path, validation_error: str | None = None) -> Assembly:
    """Read the templates, construct paths and validation report of a synthesized app."""
    repo_on_path()
    from infra.config import ENVIRONMENTS
    from infra.stack import stack_name

    templates: dict[str, dict[str, Any]] = {}
    paths: dict[str, dict[str, str]] = {}
    for env, config in ENVIRONMENTS.items():
        name = stack_name(config)
        templates[env] = json.loads((outdir / f"{name}.template.json").read_text())
        metadata = json.loads((outdir / f"{name}.metadata.json").read_text())
        paths[env] = {
            entry["data"]: path.lstrip("/")
            for path, entries in metadata.items()
            for entry in entries
            if entry.get("type") == "aws:cdk:logicalId"
        }
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    retained = {env for env, c in ENVIRONMENTS.items() if c.removal_policy == "retain"}
    return Assembly(templates, paths, report, validation_error, retained)


def synthesize(outdir: Path) -> Assembly:
    """Synthesize the real app (both environments, cdk-nag as validation) into `outdir`."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("JSII_RUNTIME_PACKAGE_CACHE_ROOT", str(REPO_ROOT / ".cache" / "jsii"))
    repo_on_path()
    from app import build_app

    error: str | None = None
    try:
        build_app(outdir).synth()
    except RuntimeError as exc:  # jsii surfaces a failed validation (cdk-nag) as RuntimeError
        error = str(exc)
    return load_assembly(outdir, error)


# -- template helpers ---------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _ref_id(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` names, else None."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else str(target).split(".")[0]
    return None


def _mentions(value: Any, logical_id: str) -> bool:
    """Does a (possibly intrinsic) value reference `logical_id`?"""
    text = json.dumps(value)
    return f'"Ref": "{logical_id}"' in text or f'["{logical_id}",' in text


def nag_text(value: Any) -> str:
    """A policy value the way cdk-nag prints it in a finding (`<Id.Arn>/prefix/*`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"<{arg}>"
        if key == "Fn::GetAtt" and isinstance(arg, list):
            return f"<{arg[0]}.{arg[1]}>"
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
            return arg[0].join(nag_text(part) for part in arg[1])
    return json.dumps(value, separators=(",", ":"))


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r.get("Type") == kind}


def _covers(granted: str, action: str) -> bool:
    """Does the granted action (maybe with wildcards) allow `action`? IAM is case-insensitive."""
    return fnmatch.fnmatchcase(action.lower(), granted.lower())


@dataclass
class Statement:
    """One Allow/Deny statement of an identity policy, and where it sits."""

    policy_id: str
    path: str
    doc: dict[str, Any]
    roles: list[str]


def identity_statements(template: dict[str, Any], paths: dict[str, str]) -> list[Statement]:
    """Every statement of AWS::IAM::Policy, ManagedPolicy and roles' inline policies."""
    found: list[Statement] = []
    for lid, res in template["Resources"].items():
        kind, props = res.get("Type"), res.get("Properties", {})
        docs: list[tuple[dict[str, Any], list[str]]] = []
        if kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = [r for r in (_ref_id(x) for x in props.get("Roles", [])) if r]
            docs.append((props.get("PolicyDocument", {}), roles))
        elif kind == "AWS::IAM::Role":
            docs.extend((p.get("PolicyDocument", {}), [lid]) for p in props.get("Policies", []))
        for doc, roles in docs:
            for statement in _as_list(doc.get("Statement", [])):
                found.append(Statement(lid, paths.get(lid, lid), statement, roles))
    return found


# -- the checks ---------------------------------------------------------------------------------


@dataclass
class Findings:
    """Counts over both templates and the violations, each prefixed with its environment."""

    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def bad(self, env: str, message: str) -> None:
        self.violations.append(f"{env}: {message}")


def check_routes(env: str, template: dict[str, Any], f: Findings) -> None:
    authorizers = _resources(template, "AWS::ApiGatewayV2::Authorizer")
    for lid, route in _resources(template, "AWS::ApiGatewayV2::Route").items():
        props = route.get("Properties", {})
        f.counts["routes"] += 1
        kind = props.get("AuthorizationType", "NONE")
        key = props.get("RouteKey", lid)
        if kind == "NONE":
            f.bad(env, f"route {key!r} has no authorizer")
        elif kind in ("JWT", "CUSTOM") and _ref_id(props.get("AuthorizerId")) not in authorizers:
            f.bad(env, f"route {key!r} is {kind} without an authorizer of this API")
        elif kind not in ("AWS_IAM", "JWT", "CUSTOM"):
            f.bad(env, f"route {key!r} has authorization {kind!r}")
        else:
            f.counts["routes with an authorizer"] += 1


def check_roles(env: str, template: dict[str, Any], f: Findings) -> None:
    by_role: dict[str, list[str]] = defaultdict(list)
    for lid, fn in _resources(template, "AWS::Lambda::Function").items():
        f.counts["functions"] += 1
        role = _ref_id(fn.get("Properties", {}).get("Role"))
        if role is None:
            f.bad(env, f"function {lid} has a role from outside the stack")
            continue
        by_role[role].append(lid)
    f.counts["function roles"] += len(by_role)
    for role, functions in sorted(by_role.items()):
        if len(functions) > 1:
            f.bad(env, f"role {role} is shared by {len(functions)} functions: {sorted(functions)}")


def _scoring_function(template: dict[str, Any]) -> str | None:
    """The function the HTTP API's integrations invoke (through an alias, a version or not)."""
    resources = template["Resources"]
    for integration in _resources(template, "AWS::ApiGatewayV2::Integration").values():
        target = _ref_id(integration.get("Properties", {}).get("IntegrationUri"))
        seen = 0
        while target in resources and seen < 4:
            kind = resources[target]["Type"]
            if kind == "AWS::Lambda::Function":
                return target
            target = _ref_id(resources[target].get("Properties", {}).get("FunctionName"))
            seen += 1
    return None


def _env_ref(function: dict[str, Any], variable: str) -> str | None:
    variables = function.get("Properties", {}).get("Environment", {}).get("Variables", {})
    return _ref_id(variables.get(variable))


def _touches(resource: Any, logical_id: str, service: str) -> bool:
    """Could this statement resource name (part of) `logical_id`'s resource?"""
    if _mentions(resource, logical_id):
        return True
    text = nag_text(resource)
    if text == "*":
        return True
    # A literal ARN pattern like arn:aws:s3:::* or arn:aws:dynamodb:*:*:table/*
    return text.startswith("arn:") and f":{service}:" in text and "*" in text


def check_scoring_role(
    env: str, template: dict[str, Any], statements: list[Statement], f: Findings
) -> None:
    fn_id = _scoring_function(template)
    if fn_id is None:
        f.bad(env, "no function behind the HTTP API: cannot find the scoring role")
        return
    fn = template["Resources"][fn_id]
    role = _ref_id(fn["Properties"].get("Role"))
    registry = _env_ref(fn, "REGISTRY_TABLE")
    bucket = _env_ref(fn, "MODEL_BUCKET")
    if not (role and registry and bucket):
        f.bad(env, f"scoring function {fn_id}: no role, REGISTRY_TABLE or MODEL_BUCKET reference")
        return
    if template["Resources"].get(role, {}).get("Properties", {}).get("ManagedPolicyArns"):
        f.bad(env, f"scoring role {role} has managed policies (not checkable here)")
    forbidden = [(registry, "dynamodb", REGISTRY_WRITES), (bucket, "s3", MODEL_BUCKET_WRITES)]
    for s in statements:
        if role not in s.roles or s.doc.get("Effect") != "Allow":
            continue
        f.counts["scoring role statements"] += 1
        if "NotAction" in s.doc or "NotResource" in s.doc:
            f.bad(env, f"scoring role statement in {s.policy_id} uses NotAction/NotResource")
            continue
        actions = [str(a) for a in _as_list(s.doc.get("Action", []))]
        for target, service, writes in forbidden:
            if not any(_touches(r, target, service) for r in _as_list(s.doc.get("Resource"))):
                continue
            allowed = sorted({w for w in writes for a in actions if _covers(a, w)})
            if allowed:
                f.bad(env, f"scoring role may {', '.join(allowed)} on {target}")


def _acknowledged(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """construct path → {finding: reason} of every acknowledged cdk-nag finding."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for plugin in report.get("pluginReports", []):
        for v in plugin.get("suppressedViolations", []):
            for c in v.get("violatingConstructs", []):
                found[c["constructPath"]][v["ruleName"]] = v.get("reason") or ""
    return found


def check_wildcards(
    env: str, statements: list[Statement], report: dict[str, Any], f: Findings
) -> None:
    acks = _acknowledged(report)
    for s in statements:
        f.counts["IAM statements"] += 1
        if s.doc.get("Effect") != "Allow":
            continue
        if "NotAction" in s.doc or "NotResource" in s.doc:
            f.bad(env, f"{s.path}: Allow with NotAction/NotResource")
            continue
        wild = [f"Action::{a}" for a in _as_list(s.doc.get("Action", [])) if "*" in str(a)]
        wild += [
            f"Resource::{nag_text(r)}" for r in _as_list(s.doc.get("Resource", []))
            if "*" in nag_text(r)
        ]  # fmt: skip
        for item in wild:
            f.counts["wildcard grants"] += 1
            reason = acks.get(s.path, {}).get(f"AwsSolutions-IAM5[{item}]")
            if reason is None:
                f.bad(env, f"{s.path}: {item} without an acknowledged reason")
            elif len(reason) < MIN_REASON:
                f.bad(env, f"{s.path}: {item} acknowledged with too short a reason: {reason!r}")
            else:
                f.counts["wildcard grants with a written reason"] += 1


def _tls_only(policy: dict[str, Any], bucket: str) -> bool:
    for s in _as_list(policy.get("PolicyDocument", {}).get("Statement", [])):
        condition = s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
        principal = s.get("Principal")
        if (
            s.get("Effect") == "Deny"
            and "s3:*" in _as_list(s.get("Action"))
            and str(condition).lower() == "false"
            and principal in ("*", {"AWS": "*"})
        ):
            resources = [nag_text(r) for r in _as_list(s.get("Resource"))]
            bucket_arn = f"<{bucket}.Arn>"
            if bucket_arn in resources and f"{bucket_arn}/*" in resources:
                return True
    return False


def check_buckets(env: str, template: dict[str, Any], f: Findings) -> None:
    policies = {
        _ref_id(p["Properties"].get("Bucket")): p["Properties"]
        for p in _resources(template, "AWS::S3::BucketPolicy").values()
    }
    for lid, bucket in _resources(template, "AWS::S3::Bucket").items():
        f.counts["buckets"] += 1
        props = bucket.get("Properties", {})
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        algos = {r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
        if not algos or not algos <= {"aws:kms", "AES256", "aws:kms:dsse"}:
            f.bad(env, f"bucket {lid} is not encrypted ({sorted(map(str, algos))})")
        block = props.get("PublicAccessBlockConfiguration", {})
        flags = (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
        if not all(block.get(k) is True for k in flags):
            f.bad(env, f"bucket {lid} does not block all public access")
        if lid not in policies or not _tls_only(policies[lid], lid):
            f.bad(env, f"bucket {lid} has no TLS-only policy on the bucket and its objects")
        else:
            f.counts["buckets locked down"] += 1


def check_retention(env: str, template: dict[str, Any], retain: bool, f: Findings) -> None:
    for kind in ("AWS::S3::Bucket", "AWS::DynamoDB::Table"):
        for lid, res in _resources(template, kind).items():
            if kind == "AWS::DynamoDB::Table":
                f.counts["tables"] += 1
                pitr = res.get("Properties", {}).get("PointInTimeRecoverySpecification", {})
                if pitr.get("PointInTimeRecoveryEnabled") is not True:
                    f.bad(env, f"table {lid} has no point-in-time recovery")
            if retain:
                policies = (res.get("DeletionPolicy"), res.get("UpdateReplacePolicy"))
                if policies != ("Retain", "Retain"):
                    f.bad(env, f"{lid} is not retained (Deletion/UpdateReplacePolicy {policies})")
                else:
                    f.counts["retained buckets and tables"] += 1


def _function_of(template: dict[str, Any], value: Any) -> tuple[str | None, str]:
    """(function logical id, qualifier) a FunctionName / target ARN value invokes."""
    resources = template["Resources"]
    target = _ref_id(value)
    if target not in resources:
        return None, ""
    kind = resources[target]["Type"]
    if kind == "AWS::Lambda::Function":
        return target, "$LATEST"
    if kind == "AWS::Lambda::Alias":
        props = resources[target]["Properties"]
        fn, _ = _function_of(template, props.get("FunctionName"))
        return fn, props.get("Name", "")
    return None, ""


def check_failure_destinations(env: str, template: dict[str, Any], f: Findings) -> None:
    resources = template["Resources"]
    async_inputs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for lid, p in _resources(template, "AWS::Lambda::Permission").items():
        props = p.get("Properties", {})
        if props.get("Principal") in ASYNC_PRINCIPALS:
            fn, qualifier = _function_of(template, props.get("FunctionName"))
            if fn:
                async_inputs[(fn, qualifier)].add(f"{props['Principal']} ({lid})")
    for lid, rule in _resources(template, "AWS::Events::Rule").items():
        for target in rule.get("Properties", {}).get("Targets", []):
            fn, qualifier = _function_of(template, target.get("Arn"))
            if fn:
                async_inputs[(fn, qualifier)].add(f"EventBridge rule {lid}")
    for lid, sub in _resources(template, "AWS::SNS::Subscription").items():
        if sub.get("Properties", {}).get("Protocol") == "lambda":
            fn, qualifier = _function_of(template, sub["Properties"].get("Endpoint"))
            if fn:
                async_inputs[(fn, qualifier)].add(f"SNS subscription {lid}")
    for lid, bucket in _resources(template, "AWS::S3::Bucket").items():
        notifications = bucket.get("Properties", {}).get("NotificationConfiguration", {})
        for cfg in notifications.get("LambdaConfigurations", []):
            fn, qualifier = _function_of(template, cfg.get("Function"))
            if fn:
                async_inputs[(fn, qualifier)].add(f"S3 notification of {lid}")
    invoke_configs: dict[tuple[str, str], dict[str, Any]] = {}
    for config in _resources(template, "AWS::Lambda::EventInvokeConfig").values():
        props = config.get("Properties", {})
        fn, _ = _function_of(template, props.get("FunctionName"))
        if fn:
            invoke_configs[(fn, props.get("Qualifier", "$LATEST"))] = props
    for (fn, qualifier), sources in sorted(async_inputs.items()):
        f.counts["asynchronously invoked functions"] += 1
        config = invoke_configs.get((fn, qualifier), {})
        on_failure = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        dlq = resources[fn].get("Properties", {}).get("DeadLetterConfig", {}).get("TargetArn")
        if on_failure or dlq:
            f.counts["... with a failure destination"] += 1
        else:
            f.bad(
                env,
                f"function {fn}:{qualifier} is invoked by {sorted(sources)} "
                "with no DLQ or on-failure destination",
            )
    for lid, mapping in _resources(template, "AWS::Lambda::EventSourceMapping").items():
        props = mapping.get("Properties", {})
        f.counts["queue/stream inputs"] += 1
        source = _ref_id(props.get("EventSourceArn"))
        on_failure = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        redrive: Any = None
        if source in resources and resources[source]["Type"] == "AWS::SQS::Queue":
            redrive = resources[source]["Properties"].get("RedrivePolicy", {})
            redrive = redrive.get("deadLetterTargetArn") if isinstance(redrive, dict) else redrive
        if on_failure or redrive:
            f.counts["... with a DLQ or on-failure destination"] += 1
        else:
            f.bad(env, f"event source mapping {lid} has no redrive DLQ or on-failure destination")


def check_nag(assembly: Assembly, f: Findings) -> None:
    """cdk-nag as tests/infra/test_infra_checks.py reads it: no violation, synthesis passed."""
    for plugin in assembly.report.get("pluginReports", []):
        for v in plugin.get("violations", []):
            where = [c["constructPath"] for c in v.get("violatingConstructs", [])]
            f.violations.append(f"cdk-nag {plugin['pluginName']}: {v['ruleName']} at {where}")
            f.counts["nag findings unacknowledged"] += 1
        for v in plugin.get("suppressedViolations", []):
            f.counts["nag findings acknowledged"] += len(v.get("violatingConstructs", [])) or 1
            if len(v.get("reason") or "") < MIN_REASON:
                f.violations.append(f"cdk-nag {v['ruleName']} acknowledged without a reason")
    if not assembly.report.get("pluginReports"):
        f.violations.append("no cdk-nag validation report: the packs did not run")
    if assembly.validation_error:
        f.violations.append(f"synthesis failed validation: {assembly.validation_error[:300]}")
    f.counts["nag packs"] = len(assembly.report.get("pluginReports", []))


def check_assembly(assembly: Assembly, result: PropertyResult) -> Findings:
    """Every check on every template; figures summed over the templates."""
    f = Findings()
    for env, template in sorted(assembly.templates.items()):
        f.counts["templates"] += 1
        statements = identity_statements(template, assembly.paths.get(env, {}))
        check_routes(env, template, f)
        check_roles(env, template, f)
        check_scoring_role(env, template, statements, f)
        check_wildcards(env, statements, assembly.report, f)
        check_buckets(env, template, f)
        check_retention(env, template, env in assembly.retained, f)
        check_failure_destinations(env, template, f)
    check_nag(assembly, f)
    result.figures.update(
        {
            "templates": f.counts["templates"],
            "routes": f.counts["routes"],
            "routes with an authorizer": f.counts["routes with an authorizer"],
            "functions": f.counts["functions"],
            "function roles": f.counts["function roles"],
            "scoring role statements": f.counts["scoring role statements"],
            "IAM statements checked": f.counts["IAM statements"],
            "wildcard grants": f.counts["wildcard grants"],
            "... with a written reason": f.counts["wildcard grants with a written reason"],
            "buckets (encrypted, TLS-only, private)": (
                f"{f.counts['buckets locked down']}/{f.counts['buckets']}"
            ),
            "tables (PITR)": f.counts["tables"],
            "retained in prod (buckets + tables)": f.counts["retained buckets and tables"],
            "async-invoked functions": f.counts["asynchronously invoked functions"],
            "queue/stream inputs": f.counts["queue/stream inputs"],
            "nag packs": f.counts["nag packs"],
            "nag findings acknowledged": f.counts["nag findings acknowledged"],
            "nag findings unacknowledged": f.counts["nag findings unacknowledged"],
        }
    )
    result.violations.extend(f.violations)
    return f


def run(mode: Mode, result: PropertyResult, assembly: Assembly | None = None) -> Findings:
    """Check `assembly`, or synthesize the app into a scratch folder and check that."""
    if assembly is not None:
        return check_assembly(assembly, result)
    with tempfile.TemporaryDirectory(prefix="ferry-p6-cdk.out-") as tmp:
        return check_assembly(synthesize(Path(tmp)), result)


@prop(6, "The stack is locked down")
def check(mode: Mode, result: PropertyResult) -> None:
    """Both templates: authorizers, roles, scoring limits, wildcards, buckets, DLQs, cdk-nag."""
    run(mode, result)
