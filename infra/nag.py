"""cdk-nag wiring: the rule packs every app runs, and construct-scoped acknowledgements."""

from __future__ import annotations

import json

from aws_cdk import Acknowledgment, App, Stack, Validations
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


def add_nag_checks(app: App) -> None:
    """Run the AwsSolutions and Serverless packs at synth; any finding fails synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on one construct, with the reason it is acceptable.

    `rule_id` is the finding as cdk-nag prints it, e.g. `AwsSolutions-IAM5[Resource::*]`; the
    acknowledgement is recorded under the plugin-qualified id synth suggests
    (`AwsSolutions::AwsSolutions-IAM5[Resource::*]`).
    """
    pack = rule_id.split("-", 1)[0]
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{pack}::{rule_id}", reason=reason))


def acknowledge_wildcard_resources(policy: IConstruct, reason: str) -> None:
    """Acknowledge AwsSolutions-IAM5 for each wildcard resource of `policy` (a CfnPolicy), by
    the finding's exact text, so a wildcard added later is still reported."""
    stack = Stack.of(policy)
    document = stack.resolve(policy.policy_document)  # type: ignore[attr-defined]
    for statement in document["Statement"]:
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            text = _nag_text(resource)
            if "*" in text:
                acknowledge(policy, f"AwsSolutions-IAM5[Resource::{text}]", reason)


def _nag_text(value: object) -> str:
    """A resolved resource as cdk-nag prints it in a finding (`<Id.Arn>`, `<Ref>`, joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"<{arg}>"
        if key == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if key == "Fn::Join":
            return str(arg[0]).join(_nag_text(part) for part in arg[1])
    return json.dumps(value, separators=(",", ":"))
