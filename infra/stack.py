"""FerryStack: composes the capability constructs; identical for every environment."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.access import Access, StageResources
from infra.api import ScoringApi
from infra.batch import BatchScoring
from infra.config import EnvironmentConfig
from infra.events import RegistryEventSchemas
from infra.governance import Governance
from infra.monitoring import Monitoring
from infra.registry import RegistryTables
from infra.retraining import Retraining
from infra.scoring import ScoringFunction
from infra.storage import Storage

_RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def stack_name(config: EnvironmentConfig) -> str:
    """The stage appears here and nowhere else in construct ids, so templates diff cleanly."""
    return f"Ferry-{config.name}"


class FerryStack(Stack):
    """The whole platform for one environment; every difference comes from `config`.

    The stack only composes the capability constructs, tags them and publishes the outputs
    the CLI reads; cdk-nag runs over the whole app (app.py).
    """

    def __init__(self, scope: Construct, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            stack_name(config),
            # Named explicitly: inside a pipeline stage the default name would carry the stage's.
            stack_name=stack_name(config),
            env=Environment(account=config.account, region=config.region),
            description="Ferry: governed serverless ML scoring platform",
            # A retained environment is also protected from `cdk destroy`.
            termination_protection=config.removal_policy == "retain",
            **kwargs,
        )
        self._config = config
        self._removal = (
            RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY
        )
        self._log_retention = _RETENTION_BY_DAYS[config.log_retention_days]
        self._compose()
        Tags.of(self).add("Project", "Ferry")
        Tags.of(self).add("Environment", config.name)
        self._outputs()

    def _compose(self) -> None:
        """Each capability in the order its dependencies need."""
        config, removal, retention = self._config, self._removal, self._log_retention
        common: dict[str, Any] = {"log_retention": retention, "removal_policy": removal}
        self.storage = storage = Storage(self, "Storage", config=config, removal_policy=removal)
        self.tables = tables = RegistryTables(self, "Tables", removal_policy=removal)
        self.scoring = ScoringFunction(
            self,
            "Scoring",
            config=config,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            data_bucket=storage.data_bucket,
            registry_table=tables.registry_table,
            **common,
        )
        self.governance = Governance(
            self,
            "Governance",
            config=config,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            registry_table=tables.registry_table,
            audit_table=tables.audit_table,
            access_logs_bucket=storage.access_logs_bucket,
            **common,
        )
        self.event_schemas = RegistryEventSchemas(self, "EventSchemas")
        self.api = ScoringApi(
            self,
            "Api",
            handler=self.scoring.alias,
            governance=self.governance.function,
            auth=config.api_auth,
            jwt_issuer=config.jwt_issuer,
            jwt_audience=config.jwt_audience,
            throttle_rate_limit=config.api_throttle_rate_limit,
            throttle_burst_limit=config.api_throttle_burst_limit,
            **common,
        )
        self.batch = BatchScoring(
            self,
            "Batch",
            config=config,
            data_bucket=storage.data_bucket,
            data_key=storage.data_key,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            registry_table=tables.registry_table,
            audit_table=tables.audit_table,
            anchor_bucket=self.governance.anchor_bucket,
            anchor_key=self.governance.anchor_key,
            **common,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            scoring=self.scoring,
            data_bucket=storage.data_bucket,
            data_key=storage.data_key,
            registry_table=tables.registry_table,
            governance=(self.governance.function, self.governance.role),
            fleet_alarms=[self.batch.dlq_alarm, self.batch.failure_alarm],
            pipelines=[("BatchFanOut", self.batch.state_machine)],
            **common,
        )
        self.retraining = Retraining(
            self,
            "Retrain",
            config=config,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            data_bucket=storage.data_bucket,
            data_key=storage.data_key,
            registry_table=tables.registry_table,
            governance_function=self.governance.function,
            governance_role=self.governance.role,
            topic=self.monitoring.topic,
            dead_letter_queue=self.monitoring.dead_letter_queue,
            **common,
        )
        self.monitoring.add_retrain_target(self.retraining.drift_target())
        self.monitoring.add_pipeline("Retrain", self.retraining.state_machine)
        self.access = Access(
            self,
            "Access",
            stage=StageResources(
                api=self.api.http_api,
                stage_name=self.api.stage.stage_name,
                model_bucket=storage.model_bucket,
                model_key=storage.model_key,
                data_bucket=storage.data_bucket,
                data_key=storage.data_key,
                anchor_bucket=self.governance.anchor_bucket,
                anchor_key=self.governance.anchor_key,
                registry_table=tables.registry_table,
                audit_table=tables.audit_table,
                retrain_machine=self.retraining.state_machine,
                batch_machine=self.batch.state_machine,
                drift_function=self.monitoring.function,
                functions=(
                    self.scoring.function,
                    self.governance.function,
                    self.batch.function,
                    self.monitoring.function,
                    self.retraining.training,
                    self.retraining.validation,
                ),
            ),
        )

    def _outputs(self) -> None:
        """Read by the CLI (`ferry --env dev|prod`) and mirrored by `.ferry/local.json`."""
        storage, tables, batch = self.storage, self.tables, self.batch
        monitoring, retraining = self.monitoring, self.retraining
        outputs = {
            "ApiUrl": self.api.url,
            "ModelBucketName": storage.model_bucket.bucket_name,
            "DataBucketName": storage.data_bucket.bucket_name,
            "RegistryTableName": tables.registry_table.table_name,
            "AuditTableName": tables.audit_table.table_name,
            "ScoringFunctionName": self.scoring.function.function_name,
            "AuditAnchorBucketName": self.governance.anchor_bucket.bucket_name,
            "GovernanceFunctionName": self.governance.function.function_name,
            "BatchQueueUrl": batch.queue.queue_url,
            "BatchFunctionName": batch.function.function_name,
            "BatchStateMachineArn": batch.state_machine.state_machine_arn,
            "IdempotencyTableName": batch.idempotency_table.table_name,
            "AlarmTopicArn": monitoring.topic.topic_arn,
            "DriftFunctionName": monitoring.function.function_name,
            "DashboardName": monitoring.dashboard.dashboard_name,
            "RetrainStateMachineArn": retraining.state_machine.state_machine_arn,
            "TrainingFunctionName": retraining.training.function_name,
            "ValidationFunctionName": retraining.validation.function_name,
        }
        for output_id, value in outputs.items():
            CfnOutput(self, output_id, value=value)
