"""cdk-nag wiring: the rule packs every app runs, and construct-scoped acknowledgements."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
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
