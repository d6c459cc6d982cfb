"""Retrain & promote: the training and validation functions, their grants and triggers.

The state machine (infra/retrain_workflow.py) runs Lock ─ Train ─ Validate ─ Decide ─ Register
─ [approval] ─ [canary] ─ Promote, every registry step in the governance function
(the core's workflow). The lock step also returns the run's effective settings (approval,
canary), so the definition is the same in every environment: dev and prod differ only in the
governance function's environment (`approval_required` and friends in infra/config.py).

Training runs in the training function or, with `training_backend="sagemaker"`, as a SageMaker
training job from the same image (infra/training.py).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.environment import training_variables, validation_variables
from infra.functions import FunctionSpec, Ids, isolated_function
from infra.nag import acknowledge
from infra.retrain_schedule import RetrainSchedule
from infra.retrain_workflow import RetrainWorkflow
from infra.source import source_variables
from infra.state_machines import RETRAIN_MACHINE, traced_state_machine
from infra.storage import MODELS_PREFIX
from infra.training import (
    CANDIDATES_PREFIX,
    TRAINERS,
    TRAINING_PREFIX,
    SageMakerTraining,
    TrainingStores,
    lambda_training,
    sagemaker_training,
    training_statements,
)
from infra.validate_version import ValidateVersion

_NO_DLQ_REASON = (
    "Invoked synchronously by the retrain state machine: a failure returns to the task, whose "
    "Retry/Catch applies and whose Reject step audits it."
)


def run_timeout(config: EnvironmentConfig) -> Duration:
    """Training + validation + the approval window + the canary + slack for the rest."""
    return Duration.minutes(
        config.training_timeout_minutes
        + 10
        + config.approval_timeout_hours * 60
        + config.canary_minutes
        + 30
    )


class Retraining(Construct):
    """The training and validation functions and the retrain-and-promote state machine."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        registry_table: dynamodb.ITable,
        governance_function: lambda_.IFunction,
        governance_role: iam.IRole,
        topic: sns.ITopic,
        dead_letter_queue: sqs.IQueue,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._governance = governance_function
        self._log_retention, self._removal = log_retention, removal_policy
        stores = TrainingStores(model_bucket, model_key, data_bucket, data_key, registry_table)
        self.training = self._function(
            "Training",
            FunctionSpec(
                folder="training",
                architecture=config.function_architectures.training,
                lock="train",
                description="Ferry training: fit a candidate and write its bundle",
                memory_mb=config.training_memory_mb,
                # Lambda's ceiling; longer fits are what the SageMaker backend is for.
                timeout=Duration.minutes(min(config.training_timeout_minutes, 15)),
                ephemeral_mb=4096,
                environment=training_variables(
                    model_bucket=model_bucket.bucket_name,
                    data_bucket=data_bucket.bucket_name,
                    registry_table=registry_table.table_name,
                    source=source_variables(self),
                ),
                no_dlq_reason=_NO_DLQ_REASON,
            ),
        )
        self.validation = self._function(
            "Validation",
            FunctionSpec(
                folder="validation",
                architecture=config.function_architectures.validation,
                lock="batch",
                description="Ferry validation: the gate every candidate passes before promotion",
                memory_mb=config.validation_memory_mb,
                timeout=Duration.minutes(10),
                ephemeral_mb=2048,
                environment=validation_variables(
                    config,
                    model_bucket=model_bucket.bucket_name,
                    registry_table=registry_table.table_name,
                ),
                no_dlq_reason=_NO_DLQ_REASON,
            ),
        )
        for statement in training_statements(stores):
            self.training.role.add_to_principal_policy(statement)
        self._grant_own_image()
        self._grant_validation(model_bucket, model_key, registry_table)
        self._grant_governance(governance_role, model_bucket, model_key, registry_table)

        self.sagemaker: SageMakerTraining | None = None
        if config.training_backend == "sagemaker":
            self.sagemaker = sagemaker_training(
                self,
                stores,
                instance_type=config.sagemaker_instance_type,
                timeout_minutes=config.training_timeout_minutes,
            )
            train_step: sfn.TaskStateBase | sfn.CustomState = self.sagemaker.state
        else:
            train_step = lambda_training(self, self.training)
        # Gates a registered version and records the result (started by governance).
        self.validate_version = ValidateVersion(
            self,
            "ValidateVersion",
            governance=governance_function,
            validation=self.validation,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        timeout = run_timeout(config)
        workflow = RetrainWorkflow(
            self, governance=governance_function, validation=self.validation, topic=topic
        )
        self.state_machine = traced_state_machine(
            self,
            "StateMachine",
            workflow.definition(train_step, timeout),
            timeout=timeout,
            log_retention=log_retention,
            removal_policy=removal_policy,
            comment="Ferry retrain & promote: train, validate, register, approve, promote",
            name_suffix=RETRAIN_MACHINE,
        )
        if self.sagemaker is not None:
            for statement in self.sagemaker.machine_statements():
                self.state_machine.add_to_role_policy(statement)
        # Routine retraining of every live model (the drift alarm's rule is in monitoring).
        self.schedule: RetrainSchedule | None = None
        if config.retrain_schedule is not None:
            self.schedule = RetrainSchedule(
                self,
                "Schedule",
                schedule=config.retrain_schedule,
                registry_table=registry_table,
                retrain_machine=self.state_machine,
                dead_letter_queue=dead_letter_queue,
                log_retention=log_retention,
                removal_policy=removal_policy,
            )
        self._acknowledge_findings(model_bucket, data_bucket, governance_role)

    # ---------------------------------------------------------------- functions

    def _function(self, construct_id: str, spec: FunctionSpec) -> lambda_.DockerImageFunction:
        fn, _, _ = isolated_function(
            self,
            Ids(construct_id, f"{construct_id}Role", f"{construct_id}Logs"),
            spec,
            role_description=spec.description,
            log_retention=self._log_retention,
            removal_policy=self._removal,
        )
        return fn

    def _grant_own_image(self) -> None:
        """`lambda:GetFunction` on the training function itself, whose `ResolvedImageUri` is
        the running image's digest (lineage). A policy of its own, not the role's default
        policy: the function depends on that one, so naming the function there is a cycle."""
        iam.Policy(
            self,
            "TrainingOwnImage",
            roles=[self.training.role],
            statements=[
                iam.PolicyStatement(
                    sid="ResolveOwnImage",
                    actions=["lambda:GetFunction"],
                    resources=[self.training.function_arn],
                )
            ],
        )

    def _grant_validation(
        self, model_bucket: s3.IBucket, model_key: kms.IKey, registry_table: dynamodb.ITable
    ) -> None:
        """Read candidates and the champion, write the report beside the candidate."""
        for statement in (
            iam.PolicyStatement(
                sid="ReadCandidatesAndModels",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[
                    model_bucket.arn_for_objects(f"{CANDIDATES_PREFIX}*"),
                    model_bucket.arn_for_objects(f"{MODELS_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(
                sid="WriteValidationReports",
                actions=["s3:PutObject"],
                resources=[model_bucket.arn_for_objects(f"{CANDIDATES_PREFIX}*/validation.json")],
            ),
            iam.PolicyStatement(
                sid="ReadRegistry",
                actions=["dynamodb:GetItem", "dynamodb:Query"],
                resources=[registry_table.table_arn],
            ),
            iam.PolicyStatement(
                sid="ModelKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[model_key.key_arn],
            ),
        ):
            self.validation.role.add_to_principal_policy(statement)

    def _grant_governance(
        self,
        role: iam.IRole,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        registry_table: dynamodb.ITable,
    ) -> None:
        """What the workflow steps add to the governance role."""
        for statement in (
            iam.PolicyStatement(
                sid="ReadCandidates",
                actions=["s3:GetObject"],
                resources=[model_bucket.arn_for_objects(f"{CANDIDATES_PREFIX}*")],
            ),
            # Registration copies a validated candidate to models/{model}/v{n}/ (If-None-Match:
            # never overwriting a registered version's files).
            iam.PolicyStatement(
                sid="RegisterArtifacts",
                actions=["s3:PutObject"],
                resources=[model_bucket.arn_for_objects(f"{MODELS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="EncryptArtifacts",
                actions=["kms:GenerateDataKey"],
                resources=[model_key.key_arn],
            ),
            # The lock, a resolved approval and an ended canary are deleted items.
            iam.PolicyStatement(
                sid="DeleteWorkflowItems",
                actions=["dynamodb:DeleteItem"],
                resources=[registry_table.table_arn],
            ),
            # The canary verdict: CloudWatch has no resource-level permissions for these.
            iam.PolicyStatement(
                sid="JudgeCanary",
                actions=["cloudwatch:GetMetricData", "cloudwatch:DescribeAlarms"],
                resources=["*"],
            ),
        ):
            role.add_to_principal_policy(statement)

    # ---------------------------------------------------------------- the drift trigger

    def drift_target(self) -> targets.SfnStateMachine:
        """The drift rule's target: the model from the alarm's metric dimension (the rule's
        owner, infra/monitoring.py, adds the dead-letter queue)."""
        dims = "$.detail.configuration.metrics[0].metricStat.metric.dimensions.model"
        return targets.SfnStateMachine(
            self.state_machine,
            input=events.RuleTargetInput.from_object(
                {
                    "model": events.EventField.from_path(dims),
                    "trigger": "drift",
                    "reason": events.EventField.from_path("$.detail.state.reason"),
                    # The run's author: the alarm that started it.
                    "requested_by": "alarm:" + events.EventField.from_path("$.detail.alarmName"),
                }
            ),
            retry_attempts=2,
        )

    # ---------------------------------------------------------------- findings

    def _acknowledge_findings(
        self, model_bucket: s3.IBucket, data_bucket: s3.IBucket, governance_role: iam.IRole
    ) -> None:
        stack = Stack.of(self)
        model_id = stack.resolve(stack.get_logical_id(model_bucket.node.default_child))
        data_id = stack.resolve(stack.get_logical_id(data_bucket.node.default_child))
        candidates = (
            f"AwsSolutions-IAM5[Resource::<{model_id}.Arn>/{CANDIDATES_PREFIX}*]",
            "Candidate bundles live at candidates/{model}/{run_id}/...: one prefix serves "
            "every run of every model, and nothing outside it.",
        )
        models = (
            f"AwsSolutions-IAM5[Resource::<{model_id}.Arn>/{MODELS_PREFIX}*]",
            "Registered versions are models/{model}/v{n}/...; validation reads the champion "
            "there, registration writes with If-None-Match (never overwriting a version).",
        )
        report = (
            f"AwsSolutions-IAM5[Resource::<{model_id}.Arn>/{CANDIDATES_PREFIX}*/validation.json]",
            "Validation writes only the report of a run: "
            "candidates/{model}/{run_id}/validation.json.",
        )
        training = (
            f"AwsSolutions-IAM5[Resource::<{data_id}.Arn>/{TRAINING_PREFIX}*]",
            "Labelled training data lands under training/{model}/...; the grant is read-only "
            "on that prefix.",
        )
        trainers = (
            f"AwsSolutions-IAM5[Resource::<{model_id}.Arn>/{TRAINERS}]",
            "Each registered version keeps its owner's trainer at models/{model}/v{n}/trainer/; "
            "training reads those files only, never a version's artifacts.",
        )
        xray = (
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) and, for governance, "
            "cloudwatch:GetMetricData/DescribeAlarms (the canary verdict) have no "
            "resource-level permissions.",
        )
        machine_policy = self.state_machine.role.node.find_child("DefaultPolicy").node
        for fn in (self.training, self.validation, self._governance):
            fn_id = stack.resolve(stack.get_logical_id(fn.node.default_child))
            acknowledge(
                machine_policy.default_child,
                f"AwsSolutions-IAM5[Resource::<{fn_id}.Arn>:*]",
                "CDK's LambdaInvoke grant: the function and its versions/aliases, no other.",
            )
        acknowledge(
            machine_policy.default_child,
            "AwsSolutions-IAM5[Resource::*]",
            "Log delivery (logs:*LogDelivery, DescribeResourcePolicies) and X-Ray put calls, "
            "added by CDK for logging and tracing, have no resource-level permissions.",
        )
        # How cdk-nag prints "region:account" in an ARN: concrete values, or the pseudo params.
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        where = f"{region}:{account}"
        if self.sagemaker is not None:
            sm_policy = self.sagemaker.role.node.find_child("DefaultPolicy").node.default_child
            for rule, reason in (candidates, training, trainers):
                acknowledge(sm_policy, rule, reason)
            acknowledge(
                sm_policy,
                "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken (pulling the training image) has no resource-level "
                "permission; the pull itself is granted on the image's repository only.",
            )
            acknowledge(
                sm_policy,
                f"AwsSolutions-IAM5[Resource::arn:aws:logs:{where}:"
                "log-group:/aws/sagemaker/TrainingJobs:*]",
                "SageMaker writes every training job's logs to this one log group, one stream "
                "per job: the grant is that group's streams.",
            )
            acknowledge(
                machine_policy.default_child,
                f"AwsSolutions-IAM5[Resource::arn:aws:sagemaker:{where}:training-job/ferry-*]",
                "Training jobs are named ferry-{run id}: the state machine may create, describe "
                "and stop those and no others.",
            )
        grants = {
            self.training.role: (candidates, training, trainers, xray),
            self.validation.role: (candidates, models, report, xray),
            governance_role: (candidates, models, xray),
        }
        for role, rules in grants.items():
            policy = role.node.try_find_child("DefaultPolicy")
            if policy is None:
                continue
            for rule, reason in rules:
                acknowledge(policy.node.default_child, rule, reason)
