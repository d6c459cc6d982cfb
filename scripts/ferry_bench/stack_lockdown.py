"""Property 6: the stack is locked down, on both synthesized templates (dev and prod).

Read from the templates `cdk synth` writes, never from the CDK constructs, so what is checked
is what deploys. tests/infra already holds the rest of the lock-down (every route behind IAM
or JWT, the scoring role's exact read-only grants, encrypted TLS-only private buckets,
retention and point-in-time recovery, cdk-nag with explained acknowledgements); this property
adds the two rules that hold over every resource of a kind, whatever a future construct adds:

- every Lambda function has a role of its own (no role shared by two functions);
- every function with an asynchronous input (S3, EventBridge, SNS, ... invoking it) has an
  on-failure destination or a DLQ for the invoked qualifier, and every function fed by a queue
  or stream has a redrive DLQ on the queue or an on-failure destination on the mapping.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry_bench.properties import Mode, PropertyResult, prop

REPO_ROOT = Path(__file__).resolve().parents[2]

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


@dataclass
class Assembly:
    """The templates one `cdk synth` of the app produced, per environment."""

    templates: dict[str, dict[str, Any]]

    def copy(self) -> Assembly:
        return copy.deepcopy(self)


def load_assembly(outdir: Path) -> Assembly:
    """Read the template of every environment from a synthesized app's output folder."""
    from infra.config import ENVIRONMENTS
    from infra.stack import stack_name

    return Assembly(
        {
            env: json.loads((outdir / f"{stack_name(config)}.template.json").read_text())
            for env, config in ENVIRONMENTS.items()
        }
    )


def synthesize(outdir: Path) -> Assembly:
    """Synthesize the real app (both environments) into `outdir`.

    A failed cdk-nag validation still writes the templates; tests/infra reports the findings.
    """
    from app import build_app

    # jsii surfaces a failed validation (cdk-nag) as RuntimeError, after writing the templates
    with contextlib.suppress(RuntimeError):
        build_app(outdir).synth()
    return load_assembly(outdir)


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


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r.get("Type") == kind}


# -- the checks ---------------------------------------------------------------------------------


@dataclass
class Findings:
    """Counts over both templates and the violations, each prefixed with its environment."""

    counts: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def bad(self, env: str, message: str) -> None:
        self.violations.append(f"{env}: {message}")


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


def check_assembly(assembly: Assembly, result: PropertyResult) -> Findings:
    """Every check on every template; figures summed over the templates."""
    f = Findings()
    for env, template in sorted(assembly.templates.items()):
        f.counts["templates"] += 1
        check_roles(env, template, f)
        check_failure_destinations(env, template, f)
    result.figures.update(
        {
            "templates": f.counts["templates"],
            "functions": f.counts["functions"],
            "function roles": f.counts["function roles"],
            "async-invoked functions": f.counts["asynchronously invoked functions"],
            "... with a failure destination": f.counts["... with a failure destination"],
            "queue/stream inputs": f.counts["queue/stream inputs"],
            "... with a DLQ or on-failure destination": f.counts[
                "... with a DLQ or on-failure destination"
            ],
        }
    )
    result.violations.extend(f.violations)
    return f


def run(mode: Mode, result: PropertyResult, assembly: Assembly | None = None) -> Findings:
    """Check `assembly`, or synthesize the app into a scratch folder and check that."""
    if assembly is not None:
        return check_assembly(assembly, result)
    with tempfile.TemporaryDirectory(prefix="ferry-stack-cdk.out-") as tmp:
        return check_assembly(synthesize(Path(tmp)), result)


@prop(6, "The stack is locked down")
def check(mode: Mode, result: PropertyResult) -> None:
    """Both templates: one role per function, a failure path for every asynchronous input."""
    run(mode, result)
