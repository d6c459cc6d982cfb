"""Retrain & promote (issue 6): training and validation functions and the state machine.

    Lock ─ Train ─ Validate ─ Decide ─ Register (staging) ─ [approval] ─ [canary] ─ Promote
      │       └────────┴─────────┴────────────┴──── Catch ──── RejectRun (audited)    │
      └ AlreadyRunning                                            Notify (SNS) ─ Unlock ─ end

Every step that touches the registry is the governance function (ferry_core/workflow.py): the
lock (one run per model), registration of the validated candidate, the approval request (a
task token; `ferry approve` / `ferry reject` resume it; the timeout rejects), the canary and
its verdict, the promotion, and the Reject step that records why a run ended in the audit
trail. The lock step also returns the run's effective settings (approval, canary), so the
definition is the same in every environment: dev and prod differ only in the governance
function's environment (`approval_required` and friends in infra/config.py).

Training runs in the training function (Lambda, container image) or, with
`training_backend="sagemaker"`, as a SageMaker training job from the same image
(`createTrainingJob.sync`, ContainerEntrypoint = sagemaker_entry.py) for data or fits beyond
Lambda's 15 minutes / 10 GB. Both write the same candidate bundle.
"""

from __future__ import annotations

from typing import Literal

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
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
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.functions import Ids, container_function
from infra.images import REPO_ROOT, context_exclude
from infra.nag import acknowledge
from infra.storage import MODELS_PREFIX

CANDIDATES_PREFIX = "candidates/"  # ferry_core/candidate.py
TRAINING_PREFIX = "training/"  # ferry_core/training.py
SAGEMAKER_ENTRY = ["/var/lang/bin/python3", "/var/task/sagemaker_entry.py"]


class Retraining(Construct):
    """The training and validation functions and the retrain-and-promote state machine."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env_name: str,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        registry_table: dynamodb.ITable,
        governance_function: lambda_.IFunction,
        governance_role: iam.IRole,
        topic: sns.ITopic,
        training_backend: Literal["lambda", "sagemaker"],
        training_memory_mb: int,
        training_timeout_minutes: int,
        sagemaker_instance_type: str,
        validation_memory_mb: int,
        gate_settings: dict[str, str],
        workflow_settings: dict[str, str],
        run_timeout: Duration,
        retrain_schedule: str | None,
        monitored_models: tuple[str, ...],
        dead_letter_queue: sqs.IQueue,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._env_name = env_name
        self._governance = governance_function
        self._log_retention, self._removal = log_retention, removal_policy
        self.training = self._function(
            "Training",
            "training",
            "train",
            training_memory_mb,
            # Lambda's ceiling; longer fits are what the SageMaker backend is for.
            Duration.minutes(min(training_timeout_minutes, 15)),
            {
                "MODEL_BUCKET": model_bucket.bucket_name,
                "DATA_BUCKET": data_bucket.bucket_name,
                "POWERTOOLS_SERVICE_NAME": "ferry-training",
            },
            "Ferry training: fit a candidate and write its bundle",
            ephemeral_mb=4096,
        )
        self.validation = self._function(
            "Validation",
            "validation",
            "batch",
            validation_memory_mb,
            Duration.minutes(10),
            {
                "MODEL_BUCKET": model_bucket.bucket_name,
                "REGISTRY_TABLE": registry_table.table_name,
                "MODEL_CACHE_DIR": "/tmp/ferry-models",
                "POWERTOOLS_SERVICE_NAME": "ferry-validation",
                **gate_settings,
            },
            "Ferry validation: the gate every candidate passes before promotion",
        )
        self._grant_training(self.training.role, model_bucket, model_key, data_bucket, data_key)
        self._grant_validation(model_bucket, model_key, registry_table)
        self._grant_governance(governance_role, model_bucket, model_key, registry_table)
        for key, value in workflow_settings.items():
            governance_function.add_environment(key, value)

        self.sagemaker_role: iam.Role | None = None
        if training_backend == "sagemaker":
            train_step: sfn.IChainable = self._sagemaker_training(
                model_bucket,
                model_key,
                data_bucket,
                data_key,
                sagemaker_instance_type,
                training_timeout_minutes,
            )
        else:
            train_step = self._lambda_training()
        self.state_machine = self._state_machine(
            train_step, governance_function, topic, run_timeout
        )
        self._triggers(retrain_schedule, monitored_models, dead_letter_queue)
        self._acknowledge_findings(model_bucket, data_bucket, governance_role)

    # ---------------------------------------------------------------- functions

    def _function(
        self,
        construct_id: str,
        folder: str,
        lock: str,
        memory_mb: int,
        timeout: Duration,
        environment: dict[str, str],
        description: str,
        ephemeral_mb: int = 2048,
    ) -> lambda_.DockerImageFunction:
        fn, _, _ = container_function(
            self,
            Ids(construct_id, f"{construct_id}Role", f"{construct_id}Logs"),
            folder=folder,
            lock=lock,
            description=description,
            role_description=description,
            memory_mb=memory_mb,
            timeout=timeout,
            environment={
                "FERRY_ENV": self._env_name,
                "POWERTOOLS_METRICS_NAMESPACE": "Ferry",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **environment,
            },
            log_retention=self._log_retention,
            removal_policy=self._removal,
            synchronous_reason="Invoked synchronously by the retrain state machine: a failure "
            "returns to the task, whose Retry/Catch applies and whose Reject step audits it.",
            ephemeral_mb=ephemeral_mb,
        )
        return fn

    def _grant_training(
        self,
        role: iam.IRole,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
    ) -> None:
        """Read labelled data under training/, write candidate bundles, nothing else."""
        for statement in (
            iam.PolicyStatement(
                sid="ReadTrainingData",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[data_bucket.arn_for_objects(f"{TRAINING_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListTrainingData",
                actions=["s3:ListBucket"],
                resources=[data_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{TRAINING_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                sid="WriteCandidates",
                actions=["s3:PutObject"],
                resources=[model_bucket.arn_for_objects(f"{CANDIDATES_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="DecryptTrainingData", actions=["kms:Decrypt"], resources=[data_key.key_arn]
            ),
            iam.PolicyStatement(
                sid="EncryptCandidates",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[model_key.key_arn],
            ),
        ):
            role.add_to_principal_policy(statement)

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
        """What the workflow steps add to the governance role (ferry_core/workflow.py)."""
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

    # ---------------------------------------------------------------- training step

    def _lambda_training(self) -> tasks.LambdaInvoke:
        return tasks.LambdaInvoke(
            self,
            "Train",
            lambda_function=self.training,
            payload=sfn.TaskInput.from_object(_training_request()),
            result_selector={
                "candidate_uri.$": "$.Payload.candidate_uri",
                "rows.$": "$.Payload.rows",
                "training_data.$": "$.Payload.training_data",
                "metrics.$": "$.Payload.metrics",
            },
            result_path="$.training",
            retry_on_service_exceptions=True,
        )

    def _sagemaker_training(
        self,
        model_bucket: s3.IBucket,
        model_key: kms.IKey,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        instance_type: str,
        timeout_minutes: int,
    ) -> sfn.CustomState:
        """`createTrainingJob.sync` running the training image's sagemaker_entry.py."""
        image = ecr_assets.DockerImageAsset(
            self,
            "TrainingImage",
            directory=str(REPO_ROOT),
            file="functions/training/Dockerfile",
            exclude=list(context_exclude("training", "train")),
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        role = iam.Role(
            self,
            "SageMakerTrainingRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Ferry SageMaker training job: read training data, write candidates",
        )
        self._grant_training(role, model_bucket, model_key, data_bucket, data_key)
        image.repository.grant_pull(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingJobLogs",
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[
                    Stack.of(self).format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/TrainingJobs:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        self.sagemaker_role = role
        request = _training_request()
        hyper = {
            key: (
                f"States.JsonToString({value})"
                if key == "params.$"
                else f"States.Format('{{}}', {value})"
            )
            for key, value in request.items()
            if key.endswith(".$")
        }
        state = sfn.CustomState(
            self,
            "Train",
            state_json={
                "Type": "Task",
                "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                "Parameters": {
                    "TrainingJobName.$": "States.Format('ferry-{}', $.run.run_id)",
                    "AlgorithmSpecification": {
                        "TrainingImage": image.image_uri,
                        "TrainingInputMode": "File",
                        "ContainerEntrypoint": SAGEMAKER_ENTRY,
                    },
                    "HyperParameters": hyper,
                    "Environment": {
                        "MODEL_BUCKET": model_bucket.bucket_name,
                        "DATA_BUCKET": data_bucket.bucket_name,
                        "FERRY_LOCK_FILE": "/var/task/train.lock",
                    },
                    "OutputDataConfig": {
                        "S3OutputPath": model_bucket.s3_url_for_object("sagemaker-output"),
                        "KmsKeyId": model_key.key_arn,
                    },
                    "ResourceConfig": {
                        "InstanceCount": 1,
                        "InstanceType": instance_type,
                        "VolumeSizeInGB": 50,
                        "VolumeKmsKeyId": model_key.key_arn,
                    },
                    "StoppingCondition": {"MaxRuntimeInSeconds": timeout_minutes * 60},
                    "RoleArn": role.role_arn,
                },
                "ResultSelector": {
                    "candidate_uri.$": "States.Format('s3://"
                    + model_bucket.bucket_name
                    + "/candidates/{}/{}/', $.HyperParameters.model, $.HyperParameters.run_id)",
                    "training_job.$": "$.TrainingJobArn",
                },
                "ResultPath": "$.training",
            },
        )
        self._sagemaker_policy = iam.PolicyStatement(
            sid="RunTrainingJobs",
            actions=[
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
            ],
            resources=[
                Stack.of(self).format_arn(
                    service="sagemaker", resource="training-job", resource_name="ferry-*"
                )
            ],
        )
        return state

    # ---------------------------------------------------------------- state machine

    def _state_machine(
        self,
        train: sfn.IChainable,
        governance: lambda_.IFunction,
        topic: sns.ITopic,
        run_timeout: Duration,
    ) -> sfn.StateMachine:
        def step(
            name: str, action: str, extra: dict | None = None, result_path: str | None = None
        ) -> tasks.LambdaInvoke:
            payload = {
                "action": action,
                "model": sfn.JsonPath.string_at("$.run.model"),
                "run_id": sfn.JsonPath.string_at("$.run.run_id"),
                "actor": sfn.JsonPath.string_at("$.run.actor"),
                **(extra or {}),
            }
            return tasks.LambdaInvoke(
                self,
                name,
                lambda_function=governance,
                payload=sfn.TaskInput.from_object(payload),
                result_selector={"result.$": "$.Payload"},
                result_path=result_path or sfn.JsonPath.DISCARD,
                retry_on_service_exceptions=True,
            )

        version = sfn.JsonPath.number_at("$.registered.version")

        def outcome(name: str, status: str, reason_path: str) -> sfn.Pass:
            return sfn.Pass(
                self,
                name,
                parameters={
                    "status": status,
                    "model": sfn.JsonPath.string_at("$.run.model"),
                    "run_id": sfn.JsonPath.string_at("$.run.run_id"),
                    "trigger": sfn.JsonPath.string_at("$.run.trigger"),
                    "version": version,
                    "reason": sfn.JsonPath.string_at(reason_path),
                },
                result_path="$.outcome",
            )

        # Common end: notify, release the lock, end as the outcome says.
        unlock = step("Unlock", "unlock")
        unlock.add_catch(sfn.Fail(self, "UnlockFailed", error="UnlockFailed"))
        end = (
            sfn.Choice(self, "Ended?")
            .when(
                sfn.Condition.string_equals("$.outcome.status", "failed"),
                sfn.Fail(
                    self,
                    "RunFailed",
                    error="RetrainFailed",
                    cause_path=sfn.JsonPath.string_at("$.outcome.reason"),
                ),
            )
            .otherwise(sfn.Succeed(self, "Done", output_path="$.outcome"))
        )
        notify = tasks.SnsPublish(
            self,
            "Notify",
            topic=topic,
            subject=sfn.JsonPath.format(
                "Ferry retraining: {} {}",
                sfn.JsonPath.string_at("$.run.model"),
                sfn.JsonPath.string_at("$.outcome.status"),
            ),
            message=sfn.TaskInput.from_json_path_at("$.outcome"),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_catch(unlock, result_path="$.notify_error")
        notify.next(unlock)
        unlock.next(end)

        # The Catch path: audit why, then end as failed.
        reject_run = step(
            "RejectRun",
            "reject_run",
            {"version": version, "error": sfn.JsonPath.object_at("$.error")},
            result_path="$.rejection",
        )
        failed = outcome("Failed", "failed", "$.rejection.result.reason")
        reject_run.next(failed)
        failed.next(notify)
        reject_run.add_catch(
            outcome("RejectRunFailed", "failed", "$.error.Cause").next(notify),
            result_path="$.error",
        )

        def guarded(task: sfn.TaskStateBase) -> sfn.TaskStateBase:
            task.add_catch(reject_run, result_path="$.error")
            return task

        lock = tasks.LambdaInvoke(
            self,
            "Lock",
            lambda_function=governance,
            payload=sfn.TaskInput.from_object(
                {
                    "action": "lock",
                    "model": sfn.JsonPath.string_at("$.model"),
                    "run_id": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "details": sfn.JsonPath.object_at("$"),
                    "lock_seconds": int(run_timeout.to_seconds()),
                }
            ),
            payload_response_only=True,
            retry_on_service_exceptions=True,
        )
        if isinstance(train, sfn.CustomState):
            train.add_catch(reject_run, result_path="$.error")
            train.add_retry(errors=["SageMaker.AmazonSageMakerException"], max_attempts=2)
        else:
            guarded(train)  # type: ignore[arg-type]
        validate = guarded(
            tasks.LambdaInvoke(
                self,
                "Validate",
                lambda_function=self.validation,
                payload=sfn.TaskInput.from_object(
                    {
                        "model": sfn.JsonPath.string_at("$.run.model"),
                        "run_id": sfn.JsonPath.string_at("$.run.run_id"),
                        "breaking_change": sfn.JsonPath.string_at("$.run.breaking_change"),
                    }
                ),
                result_selector={
                    "passed.$": "$.Payload.passed",
                    "summary.$": "$.Payload.summary",
                    "report_uri.$": "$.Payload.report_uri",
                    "failed_checks.$": "$.Payload.failed_checks",
                    "champion_version.$": "$.Payload.champion_version",
                },
                result_path="$.validation",
                retry_on_service_exceptions=True,
            )
        )
        reject_candidate = step(
            "RejectCandidate",
            "reject_run",
            {
                "reason": sfn.JsonPath.format(
                    "validation failed: {}", sfn.JsonPath.string_at("$.validation.summary")
                )
            },
            result_path="$.rejection",
        )
        reject_candidate.add_catch(reject_run, result_path="$.error")
        register = guarded(step("Register", "register_candidate", result_path="$.registered_step"))
        registered = sfn.Pass(
            self,
            "Registered",
            parameters={"version": sfn.JsonPath.number_at("$.registered_step.result.version")},
            result_path="$.registered",
        )

        # Approval gate: a task token the CLI resumes; the timeout rejects the version.
        ask = tasks.SnsPublish(
            self,
            "AskApproval",
            topic=topic,
            subject=sfn.JsonPath.format(
                "Ferry: approval needed for {} v{}",
                sfn.JsonPath.string_at("$.run.model"),
                sfn.JsonPath.string_at("$.registered.version"),
            ),
            message=sfn.TaskInput.from_object(
                {
                    "model": sfn.JsonPath.string_at("$.run.model"),
                    "version": version,
                    "run_id": sfn.JsonPath.string_at("$.run.run_id"),
                    "validation": sfn.JsonPath.string_at("$.validation.report_uri"),
                    "approve": sfn.JsonPath.string_at("$.settings.approve_command"),
                    "reject": sfn.JsonPath.string_at("$.settings.reject_command"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        ask.add_catch(reject_run, result_path="$.error")
        wait_approval = tasks.LambdaInvoke(
            self,
            "WaitForApproval",
            lambda_function=governance,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {
                    "action": "request_approval",
                    "model": sfn.JsonPath.string_at("$.run.model"),
                    "run_id": sfn.JsonPath.string_at("$.run.run_id"),
                    "version": version,
                    "task_token": sfn.JsonPath.task_token,
                }
            ),
            task_timeout=sfn.Timeout.at("$.settings.approval_timeout_seconds"),
            result_path="$.approval",
        )
        timed_out = step(
            "ApprovalTimedOut",
            "reject_run",
            {
                "version": version,
                "reason": sfn.JsonPath.format(
                    "no approval within {} s: rejected",
                    sfn.JsonPath.string_at("$.settings.approval_timeout_seconds"),
                ),
            },
            result_path="$.rejection",
        )
        timed_out.add_catch(reject_run, result_path="$.error")
        # `ferry reject` audited the decision already; this step reads its reason back.
        approval_rejected = step(
            "ApprovalRejected",
            "reject_run",
            {"version": version, "error": sfn.JsonPath.object_at("$.error")},
            result_path="$.rejection",
        )
        approval_rejected.add_catch(reject_run, result_path="$.error")
        wait_approval.add_catch(timed_out, errors=["States.Timeout"], result_path="$.error")
        wait_approval.add_catch(
            approval_rejected, errors=["ApprovalRejected"], result_path="$.error"
        )
        wait_approval.add_catch(reject_run, result_path="$.error")

        # Canary, or the switch straight away.
        promote = guarded(step("Promote", "promote_candidate", {"version": version}, "$.promotion"))
        start_canary = guarded(
            step(
                "StartCanary",
                "start_canary",
                {
                    "version": version,
                    "percent": sfn.JsonPath.number_at("$.settings.canary_percent"),
                },
            )
        )
        wait_canary = sfn.Wait(
            self, "CanaryWindow", time=sfn.WaitTime.seconds_path("$.settings.canary_seconds")
        )
        evaluate = guarded(
            step("EvaluateCanary", "evaluate_canary", {"version": version}, "$.canary")
        )
        rollback = guarded(
            step(
                "RollbackCanary",
                "rollback_canary",
                {
                    "version": version,
                    "reason": sfn.JsonPath.string_at("$.canary.result.summary"),
                },
            )
        )
        promoted = outcome("Promoted", "promoted", "$.run.reason")
        rolled_back = outcome("RolledBack", "rolled_back", "$.canary.result.summary")
        rejected = outcome("Rejected", "rejected", "$.rejection.result.reason")
        already = sfn.Succeed(self, "AlreadyRunning", comment="another run holds the lock")

        canary_or_switch = (
            sfn.Choice(self, "Canary?")
            .when(
                sfn.Condition.boolean_equals("$.settings.canary", True),
                start_canary.next(wait_canary)
                .next(evaluate)
                .next(
                    sfn.Choice(self, "CanaryHealthy?")
                    .when(sfn.Condition.boolean_equals("$.canary.result.healthy", True), promote)
                    .otherwise(rollback.next(rolled_back).next(notify))
                ),
            )
            .otherwise(promote)
        )
        promote.next(promoted).next(notify)
        approval = (
            sfn.Choice(self, "Approval?")
            .when(
                sfn.Condition.boolean_equals("$.settings.approval_required", True),
                ask.next(wait_approval).next(canary_or_switch),
            )
            .otherwise(canary_or_switch)
        )
        approval_rejected.next(rejected)
        timed_out.next(rejected)
        reject_candidate.next(rejected)
        rejected.next(notify)
        decide = (
            sfn.Choice(self, "Decide")
            .when(
                sfn.Condition.boolean_equals("$.validation.passed", True),
                register.next(registered).next(approval),
            )
            .otherwise(reject_candidate)
        )
        definition = lock.next(
            sfn.Choice(self, "Locked?")
            .when(
                sfn.Condition.boolean_equals("$.locked", True),
                sfn.Chain.start(train).next(validate).next(decide),
            )
            .otherwise(already)
        )
        log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=self._log_retention, removal_policy=self._removal
        )
        machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL),
            timeout=run_timeout,
            comment="Ferry retrain & promote: train, validate, register, approve, promote",
        )
        if self.sagemaker_role is not None:
            machine.add_to_role_policy(self._sagemaker_policy)
            machine.add_to_role_policy(
                iam.PolicyStatement(
                    sid="PassTrainingRole",
                    actions=["iam:PassRole"],
                    resources=[self.sagemaker_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                )
            )
            machine.add_to_role_policy(
                iam.PolicyStatement(
                    sid="SyncTrainingJobs",
                    actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                    resources=[
                        Stack.of(self).format_arn(
                            service="events",
                            resource="rule",
                            resource_name="StepFunctionsGetEventsForSageMakerTrainingJobsRule",
                        )
                    ],
                )
            )
        return machine

    # ---------------------------------------------------------------- triggers

    def _triggers(
        self, schedule: str | None, models: tuple[str, ...], dead_letter_queue: sqs.IQueue
    ) -> None:
        """A scheduled run per monitored model (the drift alarm's rule is in monitoring)."""
        self.schedule_rule: events.Rule | None = None
        if schedule is None:
            return
        self.schedule_rule = events.Rule(
            self,
            "Schedule",
            description="Scheduled retraining of every monitored model",
            schedule=events.Schedule.expression(schedule),
        )
        cfn_rule = self.schedule_rule.node.default_child
        for index, model in enumerate(models):
            self.schedule_rule.add_target(
                targets.SfnStateMachine(
                    self.state_machine,
                    input=events.RuleTargetInput.from_object(
                        {"model": model, "trigger": "schedule", "reason": f"schedule {schedule}"}
                    ),
                    retry_attempts=2,
                )
            )
            # Undeliverable starts go to the monitoring dead-letter queue (alarmed on); one
            # statement with a fixed Sid (the stock one names the rule's path, stage included).
            cfn_rule.add_property_override(
                f"Targets.{index}.DeadLetterConfig.Arn", dead_letter_queue.queue_arn
            )
        dead_letter_queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="RetrainScheduleDeliveries",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[dead_letter_queue.queue_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.schedule_rule.rule_arn}},
            )
        )

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
        if self.schedule_rule is not None:
            acknowledge(
                self.schedule_rule.node.default_child,
                "Serverless-EventBusDLQ",
                "Every target gets the monitoring dead-letter queue by a property override "
                "(Targets.N.DeadLetterConfig), which cdk-nag does not see.",
            )
        # How cdk-nag prints "region:account" in an ARN: concrete values, or the pseudo params.
        region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
        account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
        where = f"{region}:{account}"
        if self.sagemaker_role is not None:
            sm_policy = self.sagemaker_role.node.find_child("DefaultPolicy").node.default_child
            for rule, reason in (candidates, training):
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
            self.training.role: (candidates, training, xray),
            self.validation.role: (candidates, models, report, xray),
            governance_role: (candidates, models, xray),
        }
        for role, rules in grants.items():
            policy = role.node.try_find_child("DefaultPolicy")
            if policy is None:
                continue
            for rule, reason in rules:
                acknowledge(policy.node.default_child, rule, reason)


def _training_request() -> dict[str, str]:
    """The training step's input from the run (ferry_core.training.TrainingRequest)."""
    return {
        "model.$": "$.run.model",
        "run_id.$": "$.run.run_id",
        "training_data.$": "$.run.training_data",
        "entry_point.$": "$.run.entry_point",
        "params.$": "$.run.params",
        "actor.$": "$.run.actor",
        "trigger.$": "$.run.trigger",
    }
