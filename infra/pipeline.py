"""The optional release pipeline: source → synth → dev → smoke → approval → prod (CDK Pipelines).

The stages hold the very `FerryStack` `app.py` synthesizes, from the same `EnvironmentConfig`,
under the same stack names (`Ferry-dev`, `Ferry-prod`), so the pipeline takes over the stacks a
developer deploys by hand and the CLI's `--env dev|prod` reads the same outputs. Function images
are built in the cloud, by the pipeline's asset publishing (CodeBuild with Docker): nobody needs
Docker on a laptop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aws_cdk import (
    ArnFormat,
    CfnOutput,
    Duration,
    Environment,
    RemovalPolicy,
    Stack,
    Stage,
    Tags,
    Token,
    pipelines,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import EnvironmentConfig, PipelineConfig, crosses_accounts
from infra.nag import acknowledge
from infra.stack import FerryStack
from infra.storage import access_logs_bucket, secure_bucket

REPO_ROOT = Path(__file__).resolve().parent.parent
PIPELINE_STACK = "Ferry-pipeline"
# `ferry smoke` reads the deployed stage's outputs from `FERRY_OUTPUT_<OutputKey>` variables.
OUTPUT_ENV_PREFIX = "FERRY_OUTPUT_"
# Every CodeBuild project: the CDK CLI supports Node 22 (not 20); the venv is Python 3.12.
_RUNTIMES = codebuild.BuildSpec.from_object(
    {"phases": {"install": {"runtime-versions": {"python": "3.12", "nodejs": "22"}}}}
)
# Installs exactly the pins of requirements/dev.txt and package-lock.json (README "Quick start").
_BOOTSTRAP = "scripts/bootstrap"
_NPM_CI = "npm ci"


def cdk_cli_version(repo_root: Path = REPO_ROOT) -> str:
    """The CDK CLI `package.json` pins, so self-mutation runs the CLI the synth step runs."""
    return json.loads((repo_root / "package.json").read_text())["devDependencies"]["aws-cdk"]


class FerryStage(Stage):
    """One environment as a pipeline stage: the same `FerryStack`, from the same config."""

    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, config.name)
        self.config = config
        self.stack = FerryStack(self, config=config)

    @property
    def outputs(self) -> dict[str, CfnOutput]:
        """The stack's outputs by key, wherever in the stack's code they are declared."""
        children = self.stack.node.children
        return {child.node.id: child for child in children if isinstance(child, CfnOutput)}


class FerryPipelineStack(Stack):
    """The pipeline, in its own (tooling) account; it deploys dev, smoke-checks it, then prod."""

    def __init__(
        self,
        scope: Construct,
        *,
        pipeline: PipelineConfig,
        environments: Mapping[str, EnvironmentConfig],
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            PIPELINE_STACK,
            env=Environment(account=pipeline.account, region=pipeline.region),
            description="Ferry: release pipeline (dev, smoke check, approval, prod)",
            **kwargs,
        )
        # Whether a stage deploys into another account (README: bootstrap it with --trust);
        # refuses targets this pipeline cannot release.
        self.cross_account = crosses_accounts(pipeline, environments)
        self.source = self._source(pipeline)
        self.artifact_bucket = self._artifact_bucket(pipeline)
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            synth=pipelines.ShellStep(
                "Synth",
                input=self.source,
                install_commands=[_BOOTSTRAP, _NPM_CI],
                commands=["npx cdk synth"],
            ),
            # Not `cross_account_keys`: it only makes CDK key a bucket CDK creates. This bucket
            # always has its own key, which CDK grants the target accounts' deploy roles.
            artifact_bucket=self.artifact_bucket,
            cli_version=cdk_cli_version(),
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(
                    build_image=codebuild.LinuxBuildImage.STANDARD_7_0
                ),
                partial_build_spec=_RUNTIMES,
            ),
            # Synth only stages the image contexts and the pipeline stack has no image asset:
            # Docker runs in the image publishing projects alone (privileged, set by CDK).
            docker_enabled_for_synth=False,
            docker_enabled_for_self_mutation=False,
        )
        self.dev = FerryStage(self, config=environments["dev"])
        self.smoke = self._smoke(self.dev)
        self.pipeline.add_stage(self.dev, post=[self.smoke])
        self.prod = FerryStage(self, config=environments["prod"])
        approval = pipelines.ManualApprovalStep(
            "Approve",
            comment=f"Deploy this release to {self.prod.config.name}: it is deployed to "
            f"{self.dev.config.name} and passed `ferry smoke`.",
        )
        self.pipeline.add_stage(self.prod, pre=[approval])
        self.pipeline.build_pipeline()
        Tags.of(self).add("Project", "Ferry")
        self._acknowledge_findings()

    def _source(self, pipeline: PipelineConfig) -> pipelines.CodePipelineSource:
        """The connection's repository, or a CodeCommit repository of the pipeline's account."""
        if pipeline.source == "connection":
            assert pipeline.connection_arn is not None  # PipelineConfig validates it
            return pipelines.CodePipelineSource.connection(
                pipeline.repository, pipeline.branch, connection_arn=pipeline.connection_arn
            )
        repository = codecommit.Repository.from_repository_name(
            self, "Repository", pipeline.repository
        )
        return pipelines.CodePipelineSource.code_commit(repository, pipeline.branch)

    def _acknowledge_push_rule(self) -> None:
        """CodeCommit starts the pipeline through an EventBridge rule on the branch."""
        repository = self.node.try_find_child("Repository")
        for child in repository.node.find_all() if repository else ():
            if isinstance(child, events.CfnRule):
                acknowledge(
                    child,
                    "Serverless-EventBusDLQ",
                    "An undelivered push event (after EventBridge's 24 h of retries) loses no "
                    "work: the next push, or `Release change`, releases the branch's head.",
                )

    def _artifact_bucket(self, pipeline: PipelineConfig) -> s3.Bucket:
        """Hardened like the platform's buckets: own rotating key, access logs, TLS only.

        The key is always there: every CodeBuild project encrypts its output with it, and when
        the accounts differ CDK grants the target accounts' deploy roles decrypt on it.
        """
        logs_bucket = access_logs_bucket(
            self,
            "AccessLogsBucket",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(pipeline.log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        _, bucket = secure_bucket(
            self, "Artifacts", logs_bucket=logs_bucket, removal_policy=RemovalPolicy.RETAIN
        )
        return bucket

    def _smoke(self, stage: FerryStage) -> pipelines.CodeBuildStep:
        """`ferry smoke` against the stage just deployed, reading its outputs, GET routes only."""
        config = stage.config
        return pipelines.CodeBuildStep(
            "Smoke",
            input=self.source,
            install_commands=[_BOOTSTRAP],
            commands=[f".venv/bin/ferry smoke --env {config.name}"],
            env_from_cfn_outputs={
                f"{OUTPUT_ENV_PREFIX}{output_id}": output
                for output_id, output in stage.outputs.items()
            },
            role_policy_statements=[
                iam.PolicyStatement(
                    actions=["sts:AssumeRole"], resources=[self.persona_roles_arn(stage)]
                )
            ],
        )

    def persona_roles_arn(self, stage: FerryStage) -> str:
        """The stage's persona roles (infra/access.py): the smoke check acts as each of them.

        Their names are assigned when the stage deploys (`{stack}-Access…`), after this role
        exists, so the ARN names the stack's prefix, not each role.
        """
        return self.format_arn(
            service="iam",
            account=stage.config.account or self.account,
            region="",
            resource="role",
            resource_name=f"{stage.stack.stack_name}-Access*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def _acknowledge_findings(self) -> None:
        """The wildcards CDK Pipelines' own grants carry, each on the one policy holding it."""
        bucket_id = self._logical_id(self.artifact_bucket.node.default_child)
        for policy in _policies(self.pipeline):
            document = json.dumps(self.resolve(policy.policy_document))
            if bucket_id in document:
                _acknowledge_artifact_grants(policy, document, bucket_id)
        for project in _projects(self.pipeline):
            policy = _default_policy(project.role)
            if project.role.node.id == "DockerRole":
                continue  # one role shared by every image project: acknowledged below
            project_id = self._logical_id(project.node.default_child)
            for rule in self._project_rules(project_id):
                acknowledge(
                    policy,
                    rule,
                    "CodeBuild writes this project's own log group /aws/codebuild/<project> "
                    "(a stream per build) and report groups <project>-*, named at run time.",
                )
        self._acknowledge_shared_roles()
        self._acknowledge_push_rule()
        acknowledge(
            _default_policy(self.smoke.project.role),
            f"AwsSolutions-IAM5[Resource::{self._nag_text(self.persona_roles_arn(self.dev))}]",
            "`ferry smoke` acts as each persona role of the dev stage (client, data scientist, "
            "admin); their names are assigned when the stage deploys, so the grant names the "
            "stack's Access role prefix in its account.",
        )

    def _acknowledge_shared_roles(self) -> None:
        """The image publishers' shared role and the self-mutation role, as CDK makes them."""
        docker_role = self.pipeline.node.find_child("Assets").node.find_child("DockerRole")
        docker_policy = _default_policy(docker_role)
        for resource in ("log-group:/aws/codebuild/*", "report-group/*"):
            service = "logs" if resource.startswith("log") else "codebuild"
            arn = f"arn:aws:{service}:{self._nag_text(self.region)}:"
            acknowledge(
                docker_policy,
                f"AwsSolutions-IAM5[Resource::{arn}{self._nag_text(self.account)}:{resource}]",
                "CDK Pipelines shares one role among the image publishing projects (one per "
                "image), so its log and report grants cover any CodeBuild project's.",
            )
        acknowledge(
            docker_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "The shared image publishing role also starts those projects from the pipeline "
            "(codebuild:StartBuild/BatchGetBuilds/StopBuild); CDK grants it on * for any image.",
        )
        mutation_policy = _default_policy(self.pipeline.self_mutation_project.role)
        acknowledge(
            mutation_policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Self-mutation runs `cdk deploy` of this stack: cloudformation:DescribeStacks and "
            "s3:ListBucket find the bootstrap stack and its bucket, named only at run time.",
        )
        acknowledge(
            mutation_policy,
            f"AwsSolutions-IAM5[Resource::arn:*:iam::{self._nag_text(self.account)}:role/*]",
            "sts:AssumeRole only on the roles tagged aws-cdk:bootstrap-role deploy, "
            "file-publishing or image-publishing (a condition): the account's CDK bootstrap roles.",
        )

    def _project_rules(self, project_id: str) -> Iterator[str]:
        region, account = self._nag_text(self.region), self._nag_text(self.account)
        yield (
            f"AwsSolutions-IAM5[Resource::arn:aws:logs:{region}:{account}:log-group:"
            f"/aws/codebuild/<{project_id}>:*]"
        )
        yield (
            f"AwsSolutions-IAM5[Resource::arn:aws:codebuild:{region}:{account}:report-group/"
            f"<{project_id}>-*]"
        )

    def _logical_id(self, element: Any) -> str:
        return str(self.resolve(self.get_logical_id(element)))

    def _nag_text(self, value: str) -> str:
        """How cdk-nag prints a value in a rule id: a pseudo parameter as `<AWS::AccountId>`."""
        if not Token.is_unresolved(value):
            return value
        resolved = self.resolve(value)
        if isinstance(resolved, dict) and "Ref" in resolved:
            return f"<{resolved['Ref']}>"
        parts = resolved["Fn::Join"][1]
        return "".join(p if isinstance(p, str) else f"<{p['Ref']}>" for p in parts)


_ARTIFACT_ACTIONS = (
    "s3:Abort*",
    "s3:DeleteObject*",
    "s3:GetBucket*",
    "s3:GetObject*",
    "s3:List*",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
)


def _acknowledge_artifact_grants(policy: iam.CfnPolicy, document: str, bucket_id: str) -> None:
    """CDK's read (or read-write) grant on the pipeline's artifact bucket and its key."""
    reason = (
        "CDK's grant on this pipeline's own artifact bucket and its key: artifacts are "
        "written per execution under generated keys, so the grant covers the bucket's objects."
    )
    for action in _ARTIFACT_ACTIONS:
        if f'"{action}"' in document:
            acknowledge(policy, f"AwsSolutions-IAM5[Action::{action}]", reason)
    acknowledge(policy, f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]", reason)


def _policies(scope: Construct) -> Iterator[iam.CfnPolicy]:
    for child in scope.node.find_all():
        if isinstance(child, iam.CfnPolicy):
            yield child


def _projects(scope: Construct) -> Iterator[codebuild.Project]:
    for child in scope.node.find_all():
        if isinstance(child, codebuild.Project):
            yield child


def _default_policy(role: Any) -> iam.CfnPolicy:
    return role.node.find_child("DefaultPolicy").node.default_child
