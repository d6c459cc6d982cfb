"""The retrain workflow's Train step: the training function, or a SageMaker training job.

Both run the training image and write the same candidate bundle under `candidates/`. The
SageMaker job (`createTrainingJob.sync`, ContainerEntrypoint = sagemaker_entry.py) is for data
or fits beyond Lambda's 15 minutes / 10 GB.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.environment import training_job_variables
from infra.images import REPO_ROOT, context_exclude
from infra.retention import CANDIDATES_PREFIX, TRAINING_PREFIX
from infra.source import source_variables
from infra.storage import MODELS_PREFIX

# Each registered version's trainer file and lock (ferry_core/trainer_files.py).
TRAINERS = f"{MODELS_PREFIX}*/trainer/*"
SAGEMAKER_ENTRY = ["/var/lang/bin/python3", "/var/task/sagemaker_entry.py"]


@dataclass(frozen=True)
class TrainingStores:
    """The buckets and keys training reads from and writes to."""

    model_bucket: s3.IBucket
    model_key: kms.IKey
    data_bucket: s3.IBucket
    data_key: kms.IKey
    registry_table: dynamodb.ITable


def training_statements(stores: TrainingStores) -> list[iam.PolicyStatement]:
    """Read labelled data under training/ and each model's registered trainer (the registry
    says which version's), write candidate bundles, nothing else."""
    return [
        iam.PolicyStatement(
            sid="ReadRegistry",
            actions=["dynamodb:GetItem", "dynamodb:Query"],
            resources=[stores.registry_table.table_arn],
        ),
        iam.PolicyStatement(
            sid="ReadTrainers",
            actions=["s3:GetObject"],
            resources=[stores.model_bucket.arn_for_objects(TRAINERS)],
        ),
        iam.PolicyStatement(
            sid="ReadTrainingData",
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[stores.data_bucket.arn_for_objects(f"{TRAINING_PREFIX}*")],
        ),
        iam.PolicyStatement(
            sid="ListTrainingData",
            actions=["s3:ListBucket"],
            resources=[stores.data_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{TRAINING_PREFIX}*"]}},
        ),
        iam.PolicyStatement(
            sid="WriteCandidates",
            actions=["s3:PutObject"],
            resources=[stores.model_bucket.arn_for_objects(f"{CANDIDATES_PREFIX}*")],
        ),
        iam.PolicyStatement(
            sid="DecryptTrainingData",
            actions=["kms:Decrypt"],
            resources=[stores.data_key.key_arn],
        ),
        iam.PolicyStatement(
            sid="EncryptCandidates",
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=[stores.model_key.key_arn],
        ),
    ]


def training_request() -> dict[str, str]:
    """The training step's input from the run: the fields of the core's training request."""
    return {
        "model.$": "$.run.model",
        "run_id.$": "$.run.run_id",
        "training_data.$": "$.run.training_data",
        "entry_point.$": "$.run.entry_point",
        "params.$": "$.run.params",
        "actor.$": "$.run.actor",
        "trigger.$": "$.run.trigger",
        "requested_by.$": "$.run.requested_by",
    }


def lambda_training(scope: Construct, function: lambda_.IFunction) -> tasks.LambdaInvoke:
    """Train in the training function."""
    return tasks.LambdaInvoke(
        scope,
        "Train",
        lambda_function=function,
        payload=sfn.TaskInput.from_object(training_request()),
        result_selector={
            "candidate_uri.$": "$.Payload.candidate_uri",
            "rows.$": "$.Payload.rows",
            "training_data.$": "$.Payload.training_data",
            "metrics.$": "$.Payload.metrics",
        },
        result_path="$.training",
        retry_on_service_exceptions=True,
    )


@dataclass(frozen=True)
class SageMakerTraining:
    """The Train state of a SageMaker job, the job's role, and what the state machine needs."""

    state: sfn.CustomState
    role: iam.Role

    def machine_statements(self) -> list[iam.PolicyStatement]:
        """Run, describe and stop `ferry-*` jobs as `role`, and the .sync integration's rule."""
        stack = Stack.of(self.state)
        return [
            iam.PolicyStatement(
                sid="RunTrainingJobs",
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[
                    stack.format_arn(
                        service="sagemaker", resource="training-job", resource_name="ferry-*"
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="PassTrainingRole",
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="SyncTrainingJobs",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    stack.format_arn(
                        service="events",
                        resource="rule",
                        resource_name="StepFunctionsGetEventsForSageMakerTrainingJobsRule",
                    )
                ],
            ),
        ]


def _training_job_role(scope: Construct, stores: TrainingStores) -> iam.Role:
    """Read training data, write candidates, write the job's logs (the image pull is added)."""
    role = iam.Role(
        scope,
        "SageMakerTrainingRole",
        assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
        description="Ferry SageMaker training job: read training data, write candidates",
    )
    for statement in training_statements(stores):
        role.add_to_principal_policy(statement)
    return role


def _job_logs(scope: Construct) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="TrainingJobLogs",
        actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[
            Stack.of(scope).format_arn(
                service="logs",
                resource="log-group",
                resource_name="/aws/sagemaker/TrainingJobs:*",
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
        ],
    )


def sagemaker_training(
    scope: Construct, stores: TrainingStores, *, instance_type: str, timeout_minutes: int
) -> SageMakerTraining:
    """`createTrainingJob.sync` running the training image's sagemaker_entry.py."""
    image = ecr_assets.DockerImageAsset(
        scope,
        "TrainingImage",
        directory=str(REPO_ROOT),
        file="functions/training/Dockerfile",
        exclude=list(context_exclude("training", "train")),
        # The job runs on `sagemaker_instance_type` (an x86 ml.m5.xlarge by default): this image
        # stays amd64 whatever function_architectures.training says of the training function.
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
    role = _training_job_role(scope, stores)
    image.repository.grant_pull(role)
    role.add_to_policy(_job_logs(scope))
    hyper = {
        key: (
            f"States.JsonToString({value})"
            if key == "params.$"
            else f"States.Format('{{}}', {value})"
        )
        for key, value in training_request().items()
        if key.endswith(".$")
    }
    model_bucket = stores.model_bucket
    state = sfn.CustomState(
        scope,
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
                "Environment": training_job_variables(
                    model_bucket=model_bucket.bucket_name,
                    data_bucket=stores.data_bucket.bucket_name,
                    registry_table=stores.registry_table.table_name,
                    source=source_variables(scope),
                    job_seconds=timeout_minutes * 60,
                ),
                "OutputDataConfig": {
                    "S3OutputPath": model_bucket.s3_url_for_object("sagemaker-output"),
                    "KmsKeyId": stores.model_key.key_arn,
                },
                "ResourceConfig": {
                    "InstanceCount": 1,
                    "InstanceType": instance_type,
                    "VolumeSizeInGB": 50,
                    "VolumeKmsKeyId": stores.model_key.key_arn,
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
    return SageMakerTraining(state, role)
