"""Static checks on the synthesized app: cdk-nag, cfn-lint, outputs and tags."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk import CfnResource, Stack, Validations
from cfnlint.api import ManualArgs, lint_file

from infra.config import ENVIRONMENTS

if TYPE_CHECKING:
    from conftest import Synthesis

# cfn-lint findings we accept, each with the reason.
CFN_LINT_ACCEPTED = {
    # CDK adds DependsOn [role, role default policy] to every Lambda function so the policy
    # exists before the function runs; the role half is redundant with GetAtt, and harmless.
    "W3005",
}

OUTPUT_IDS = {
    "ApiUrl",
    "ModelBucketName",
    "DataBucketName",
    "RegistryTableName",
    "AuditTableName",
    "ScoringFunctionName",
    "AuditAnchorBucketName",
    "GovernanceFunctionName",
    "BatchQueueUrl",
    "BatchFunctionName",
    "BatchStateMachineArn",
    "IdempotencyTableName",
    "AlarmTopicArn",
    "DriftFunctionName",
    "DashboardName",
    "RetrainStateMachineArn",
    "TrainingFunctionName",
    "ValidationFunctionName",
    # The people's roles (the local platform's identities assume them).
    "IdentityClientRoleArn",
    "IdentityDataScientistRoleArn",
    "IdentityApproverRoleArn",
    "IdentityAdminRoleArn",
}


def test_cdk_nag_reports_no_unacknowledged_finding(synthesis: Synthesis) -> None:
    """
    Given the app with the AwsSolutions and Serverless packs as validation plugins
    When it is synthesized
    Then synthesis succeeds and the validation report holds no violation (errors or warnings)
    """
    violations = [
        f"{report['pluginName']}: {violation['ruleName']} at "
        f"{[c['constructPath'] for c in violation['violatingConstructs']]}"
        for report in synthesis.validation_report.get("pluginReports", [])
        for violation in report.get("violations", [])
    ]
    assert violations == []
    assert synthesis.validation_error is None


def test_acknowledgements_are_narrow_and_explained(synthesis: Synthesis) -> None:
    """
    Given every cdk-nag acknowledgement recorded in the construct tree
    When I look at where it sits and what it says
    Then each sits on a single CloudFormation resource (never a stack or the app) and gives a
        specific reason
    """
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found = []
    for construct in synthesis.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != key:
                continue
            for rule_id, reason in entry.data.items():
                found.append(rule_id)
                assert isinstance(construct, CfnResource), (rule_id, construct.node.path)
                assert not isinstance(construct, Stack)
                assert len(reason) >= 60, (rule_id, reason)
    assert found, "expected the documented acknowledgements"


@pytest.mark.parametrize("env_name", sorted(ENVIRONMENTS))
def test_templates_are_cfn_lint_clean(synthesis: Synthesis, env_name: str) -> None:
    """
    Given a synthesized template
    When cfn-lint checks it for its environment's region
    Then it reports no error, warning or informational finding beyond the accepted ones
    """
    config = ManualArgs(regions=[ENVIRONMENTS[env_name].region])
    matches = lint_file(synthesis.template_path(env_name), config=config)
    findings = [
        f"{m.rule.id} {m.message} ({m.path_string})"
        for m in matches
        if m.rule.id not in CFN_LINT_ACCEPTED
    ]
    assert findings == []


def test_outputs_are_the_documented_ids(template_json: dict[str, Any]) -> None:
    """
    Given a synthesized template
    When I read its outputs
    Then they are exactly the ids the CLI and .ferry/local.json rely on
    """
    assert set(template_json["Outputs"]) == OUTPUT_IDS


def test_taggable_resources_carry_project_and_environment(
    template_json: dict[str, Any], env: str
) -> None:
    """
    Given the stack tags
    When I read the tags of the buckets, tables, function and API
    Then each carries Project=Ferry and Environment=<env>
    """
    wanted = {"Project": "Ferry", "Environment": env}
    tagged = (
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::ApiGatewayV2::Api",
    )
    for logical_id, resource in template_json["Resources"].items():
        if resource["Type"] not in tagged:
            continue
        tags = resource["Properties"]["Tags"]
        as_dict = tags if isinstance(tags, dict) else {t["Key"]: t["Value"] for t in tags}
        assert wanted.items() <= as_dict.items(), logical_id
