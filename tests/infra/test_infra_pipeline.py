"""The release pipeline (infra/pipeline.py), synthesized through app.build_app as `cdk synth` does.

Two pipelines: one with no account named anywhere (all in the deploying credentials' account)
and a connection source, and one deploying dev and prod into two other accounts from CodeCommit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, CfnResource, Validations
from cfnlint.api import ManualArgs, lint_file
from test_infra_checks import CFN_LINT_ACCEPTED, OUTPUT_IDS

from app import build_app
from infra.config import ENVIRONMENTS, PIPELINE, PipelineConfig
from infra.pipeline import OUTPUT_ENV_PREFIX, PIPELINE_STACK, cdk_cli_version

TOOLING, DEV, PROD = "111111111111", "222222222222", "333333333333"
CONNECTION = (
    "arn:aws:codeconnections:us-east-1:111111111111:connection/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
)


@dataclass(frozen=True)
class Pipeline:
    """One synthesized app with a pipeline: its assembly and the pipeline stack's template."""

    app: App
    outdir: Path
    template: dict[str, Any]
    validation_error: str | None
    validation_report: dict[str, Any]
    accounts: dict[str, str | None]  # the account each environment names

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == kind}

    def stages(self) -> list[dict[str, Any]]:
        (pipeline,) = self.resources("AWS::CodePipeline::Pipeline").values()
        return pipeline["Properties"]["Stages"]

    def actions(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(stage, action) in execution order: stage by stage, then by run order."""
        for stage in self.stages():
            for action in sorted(stage["Actions"], key=lambda a: a.get("RunOrder", 1)):
                yield stage["Name"], action

    def project(self, action: dict[str, Any]) -> dict[str, Any]:
        return self.template["Resources"][action["Configuration"]["ProjectName"]["Ref"]]

    def stage_template(self, env: str) -> dict[str, Any]:
        (path,) = (self.outdir / f"assembly-{PIPELINE_STACK}-{env}").glob("*.template.json")
        return json.loads(path.read_text())


def _synthesize(outdir: Path, pipeline: PipelineConfig, accounts: dict[str, str]) -> Pipeline:
    environments = {
        name: config.model_copy(update={"account": accounts.get(name)})
        for name, config in ENVIRONMENTS.items()
    }
    app = build_app(outdir, environments=environments, pipeline=pipeline)
    error: str | None = None
    try:
        app.synth()
    except RuntimeError as exc:  # cdk-nag's ValidationFailed
        error = str(exc)
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    template = json.loads((outdir / f"{PIPELINE_STACK}.template.json").read_text())
    named = {name: accounts.get(name) for name in ENVIRONMENTS}
    return Pipeline(app, outdir, template, error, report, named)


@pytest.fixture(scope="module")
def same_account(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    config = PipelineConfig(
        region="us-east-1",
        source="connection",
        repository="acme/ferry",
        connection_arn=CONNECTION,
    )
    return _synthesize(tmp_path_factory.mktemp("same"), config, {})


@pytest.fixture(scope="module")
def cross_account(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    config = PipelineConfig(
        account=TOOLING, region="us-east-1", source="codecommit", repository="ferry"
    )
    return _synthesize(tmp_path_factory.mktemp("cross"), config, {"dev": DEV, "prod": PROD})


@pytest.fixture(params=["same_account", "cross_account"])
def pipeline(request: pytest.FixtureRequest) -> Pipeline:
    """Each pipeline in turn: these assertions hold whether the accounts differ or not."""
    return request.getfixturevalue(request.param)


def _step(stage: str, action: dict[str, Any]) -> str | None:
    """What an action does in the release, or None for CDK's own upkeep (self-update, images)."""
    kind = action["ActionTypeId"]["Category"]
    if kind == "Source":
        return "source"
    if stage == "Build":
        return "synth"
    if kind == "Deploy" and action["ActionTypeId"]["Provider"] == "CloudFormation":
        return f"deploy {action['Configuration']['StackName']}"
    if kind == "Approval":
        return "approval"
    if stage in ENVIRONMENTS and action["Name"] == "Smoke":
        return "smoke"
    return None


def test_release_runs_source_synth_dev_smoke_approval_prod(pipeline: Pipeline) -> None:
    """
    Given the synthesized pipeline
    When I list what its actions do, in execution order
    Then the source, the synth, dev's deployment, the smoke check, the manual approval and
        prod's deployment come in that order (each stack prepared then deployed)
    """
    steps = [_step(stage, action) for stage, action in pipeline.actions()]
    release = [step for i, step in enumerate(steps) if step and step not in steps[:i]]
    assert release == [
        "source",
        "synth",
        "deploy Ferry-dev",
        "smoke",
        "approval",
        "deploy Ferry-prod",
    ]
    stages = [stage["Name"] for stage in pipeline.stages()]
    assert stages.index("dev") < stages.index("prod")


def test_stages_deploy_the_very_templates_of_app_py(pipeline: Pipeline) -> None:
    """
    Given the app's Ferry-dev / Ferry-prod and the pipeline's dev / prod stages
    When I compare their templates
    Then they are identical, so the parity test's proof covers what the pipeline deploys
    """
    for env in ENVIRONMENTS:
        root = json.loads((pipeline.outdir / f"Ferry-{env}.template.json").read_text())
        assert pipeline.stage_template(env) == root, env


def test_smoke_step_runs_ferry_smoke_on_dev_outputs(pipeline: Pipeline) -> None:
    """
    Given the smoke action after dev's deployment
    When I read its CodeBuild project and the variables the action passes
    Then it runs `ferry smoke --env dev` with every output of dev's stack as FERRY_OUTPUT_<id>
    """
    (smoke,) = (a for stage, a in pipeline.actions() if _step(stage, a) == "smoke")
    (deploy,) = (
        a
        for _, a in pipeline.actions()
        if a["Name"] == "Ferry-dev.Deploy"  # CDK Pipelines' name: <stack>.Deploy
    )
    buildspec = json.loads(pipeline.project(smoke)["Properties"]["Source"]["BuildSpec"])
    assert buildspec["phases"]["build"]["commands"] == [".venv/bin/ferry smoke --env dev"]
    variables = {
        v["name"]: v["value"] for v in json.loads(smoke["Configuration"]["EnvironmentVariables"])
    }
    namespace = deploy["Namespace"]
    assert variables == {
        f"{OUTPUT_ENV_PREFIX}{output}": f"#{{{namespace}.{output}}}" for output in OUTPUT_IDS
    }


def test_smoke_step_may_only_act_as_the_dev_stages_personas(pipeline: Pipeline) -> None:
    """
    Given the smoke project's role
    When I read its policy, leaving out what every pipeline CodeBuild project gets (its own
        logs and reports, reading the artifacts)
    Then the one other permission is sts:AssumeRole on the dev stack's persona roles (its
        Access roles) in dev's account: each check runs as the persona whose job it is
    """
    (smoke,) = (a for stage, a in pipeline.actions() if _step(stage, a) == "smoke")
    role = pipeline.project(smoke)["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    (policy,) = (
        p
        for p in pipeline.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    )
    common = ("logs:", "codebuild:", "s3:Get", "s3:List", "kms:")
    extra = [
        statement
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if not all(action.startswith(common) for action in _list(statement["Action"]))
    ]
    account = pipeline.accounts["dev"]
    arn = f"arn:aws:iam::{account}:role/Ferry-dev-Access*"
    if account is None:  # the pipeline's own account, known at deploy time
        prefix, suffix = "arn:aws:iam::", ":role/Ferry-dev-Access*"
        arn = {"Fn::Join": ["", [prefix, {"Ref": "AWS::AccountId"}, suffix]]}
    assert extra == [{"Action": "sts:AssumeRole", "Effect": "Allow", "Resource": arn}]


def test_synth_installs_the_locks_and_docker_runs_only_for_images(pipeline: Pipeline) -> None:
    """
    Given the synth, self-mutation and image publishing projects
    When I read their build specs and environments
    Then synth installs the pinned venv and CLI and runs `cdk synth`, self-mutation uses the
        CLI version package.json pins, and only the image publishing projects are privileged
    """
    projects = pipeline.resources("AWS::CodeBuild::Project")
    specs = {k: json.loads(p["Properties"]["Source"]["BuildSpec"]) for k, p in projects.items()}
    (synth,) = (s for k, s in specs.items() if "Synth" in k)
    assert synth["phases"]["install"]["commands"] == ["scripts/bootstrap", "npm ci"]
    assert synth["phases"]["build"]["commands"] == ["npx cdk synth"]
    assert synth["artifacts"]["base-directory"] == "cdk.out"
    (mutation,) = (s for k, s in specs.items() if "SelfMutation" in k)
    assert mutation["phases"]["install"]["commands"] == [
        f"npm install -g aws-cdk@{cdk_cli_version()}"
    ]
    privileged = {
        k for k, p in projects.items() if p["Properties"]["Environment"].get("PrivilegedMode")
    }
    assert privileged == {k for k in projects if "DockerAsset" in k}
    assert len(privileged) >= 1
    for spec in specs.values():
        assert spec["phases"]["install"]["runtime-versions"] == {"python": "3.12", "nodejs": "22"}


def test_artifacts_are_encrypted_with_a_rotating_customer_key(pipeline: Pipeline) -> None:
    """
    Given the pipeline's artifact store and its CodeBuild projects
    When I read their encryption
    Then the bucket uses its own rotating KMS key, logs access, and every project uses that key
    """
    (pipeline_resource,) = pipeline.resources("AWS::CodePipeline::Pipeline").values()
    store = pipeline_resource["Properties"]["ArtifactStore"]
    bucket = pipeline.template["Resources"][store["Location"]["Ref"]]["Properties"]
    key_id = store["EncryptionKey"]["Id"]["Fn::GetAtt"][0]
    assert pipeline.template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    assert "LoggingConfiguration" in bucket
    for project in pipeline.resources("AWS::CodeBuild::Project").values():
        assert project["Properties"]["EncryptionKey"] == {"Fn::GetAtt": [key_id, "Arn"]}


def _deploy_roles(pipeline: Pipeline) -> dict[str, str]:
    """The role each stack's deploy actions assume, by stack name."""
    return {
        action["Configuration"]["StackName"]: json.dumps(action["RoleArn"])
        for _, action in pipeline.actions()
        if action["ActionTypeId"]["Provider"] == "CloudFormation"
    }


def test_cross_account_deploys_assume_the_target_accounts_roles(cross_account: Pipeline) -> None:
    """
    Given dev and prod in two accounts other than the pipeline's
    When I read the deploy actions and the artifact key's policy
    Then each stack is deployed by its own account's bootstrapped deploy role, and the key lets
        exactly those roles decrypt the artifacts
    """
    assert cross_account.app.node.find_child(PIPELINE_STACK).cross_account is True
    roles = _deploy_roles(cross_account)
    assert f"iam::{DEV}:role/cdk-hnb659fds-deploy-role-{DEV}-" in roles["Ferry-dev"]
    assert f"iam::{PROD}:role/cdk-hnb659fds-deploy-role-{PROD}-" in roles["Ferry-prod"]
    (key,) = cross_account.resources("AWS::KMS::Key").values()
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    grantees = json.dumps([s["Principal"] for s in statements if "kms:Decrypt" in s["Action"]])
    assert f"{DEV}:role/cdk-hnb659fds-deploy-role" in grantees
    assert f"{PROD}:role/cdk-hnb659fds-deploy-role" in grantees


def test_same_account_deploys_stay_in_the_pipelines_account(same_account: Pipeline) -> None:
    """
    Given a pipeline, dev and prod that name no account (all deploy into the credentials' one)
    When I read the deploy actions and every account id the pipeline template names
    Then both stacks are deployed by the bootstrapped deploy role of the pipeline's own account,
        and the only account named is the connection's, from its ARN
    """
    assert same_account.app.node.find_child(PIPELINE_STACK).cross_account is False
    roles = _deploy_roles(same_account)
    assert set(roles) == {"Ferry-dev", "Ferry-prod"}
    for role in roles.values():
        assert ':iam::", {"Ref": "AWS::AccountId"}, ":role/cdk-hnb659fds-deploy-role-' in role
    assert set(re.findall(r"\b\d{12}\b", json.dumps(same_account.template))) == {TOOLING}


def test_cdk_nag_reports_nothing_for_the_pipeline(pipeline: Pipeline) -> None:
    """
    Given the app with the pipeline, checked by the AwsSolutions and Serverless packs
    When it is synthesized
    Then synthesis succeeds with no violation, and every acknowledgement in the pipeline stack
        sits on one CloudFormation resource with a specific reason
    """
    violations = [
        f"{v['ruleName']} at {[c['constructPath'] for c in v['violatingConstructs']]}"
        for report in pipeline.validation_report.get("pluginReports", [])
        for v in report.get("violations", [])
    ]
    assert violations == []
    assert pipeline.validation_error is None
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    stack = pipeline.app.node.find_child(PIPELINE_STACK)
    acknowledged = [
        (construct, reason)
        for construct in stack.node.find_all()
        for entry in construct.node.metadata
        if entry.type == key
        for reason in entry.data.values()
    ]
    assert acknowledged
    for construct, reason in acknowledged:
        assert isinstance(construct, CfnResource), construct.node.path
        assert len(reason) >= 60, (construct.node.path, reason)


def _accepted_in_pipeline(match: Any) -> bool:
    """CDK Pipelines writes a deploy action's RoleArn as Fn::Join of partition and account;
    cfn-lint's action check prefers Fn::Sub for the same string, which CodePipeline takes as is.
    """
    return (
        match.rule.id == "E3703"
        and "Prefer using Fn::Sub" in match.message
        and match.path_string.endswith("/Configuration/RoleArn")
    )


def test_pipeline_template_is_cfn_lint_clean(pipeline: Pipeline) -> None:
    """
    Given the pipeline stack's template
    When cfn-lint checks it for the pipeline's region
    Then it reports nothing beyond the app's accepted findings and CDK Pipelines' RoleArn form
    """
    path = pipeline.outdir / f"{PIPELINE_STACK}.template.json"
    matches = lint_file(path, config=ManualArgs(regions=["us-east-1"]))
    findings = [
        f"{m.rule.id} {m.message} ({m.path_string})"
        for m in matches
        if m.rule.id not in CFN_LINT_ACCEPTED and not _accepted_in_pipeline(m)
    ]
    assert findings == []


def test_shipped_app_synthesizes_the_pipeline_only_when_configured(synthesis: Any) -> None:
    """
    Given the shipped config and the app `python app.py` synthesizes
    When I look for the pipeline stack in its assembly
    Then it is there exactly when infra/config.py sets PIPELINE
    """
    exists = (synthesis.outdir / f"{PIPELINE_STACK}.template.json").exists()
    assert exists == (PIPELINE is not None)


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value
