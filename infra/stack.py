"""FerryStack: composes the capability constructs; identical for every environment."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Duration, Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.api import ScoringApi
from infra.batch import BatchScoring
from infra.config import EnvironmentConfig
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
    """The whole platform for one environment; every difference comes from `config`."""

    def __init__(self, scope: Construct, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            stack_name(config),
            env=Environment(account=config.account, region=config.region),
            description="Ferry: governed serverless ML scoring platform",
            # A retained environment is also protected from `cdk destroy`.
            termination_protection=config.removal_policy == "retain",
            **kwargs,
        )
        removal_policy = (
            RemovalPolicy.RETAIN if config.removal_policy == "retain" else RemovalPolicy.DESTROY
        )
        log_retention = _RETENTION_BY_DAYS[config.log_retention_days]

        storage = Storage(
            self,
            "Storage",
            removal_policy=removal_policy,
            access_log_retention=Duration.days(config.log_retention_days),
        )
        tables = RegistryTables(self, "Tables", removal_policy=removal_policy)
        scoring = ScoringFunction(
            self,
            "Scoring",
            env_name=config.name,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            data_bucket=storage.data_bucket,
            registry_table=tables.registry_table,
            audit_table=tables.audit_table,
            memory_mb=config.scoring_memory_mb,
            timeout=Duration.seconds(config.scoring_timeout_seconds),
            reserved_concurrency=config.scoring_reserved_concurrency,
            provisioned_concurrency=config.scoring_provisioned_concurrency,
            registry_cache_seconds=config.registry_cache_seconds,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        api = ScoringApi(
            self,
            "Api",
            handler=scoring.alias,
            auth=config.api_auth,
            jwt_issuer=config.jwt_issuer,
            jwt_audience=config.jwt_audience,
            throttle_rate_limit=config.api_throttle_rate_limit,
            throttle_burst_limit=config.api_throttle_burst_limit,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )

        governance = Governance(
            self,
            "Governance",
            env_name=config.name,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            registry_table=tables.registry_table,
            audit_table=tables.audit_table,
            access_logs_bucket=storage.access_logs_bucket,
            anchor_retention_days=config.audit_anchor_retention_days,
            approval_required=config.approval_required,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )

        batch = BatchScoring(
            self,
            "Batch",
            env_name=config.name,
            data_bucket=storage.data_bucket,
            data_key=storage.data_key,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            registry_table=tables.registry_table,
            audit_table=tables.audit_table,
            anchor_bucket=governance.anchor_bucket,
            anchor_key=governance.anchor_key,
            memory_mb=config.batch_memory_mb,
            timeout_seconds=config.batch_timeout_seconds,
            chunk_rows=config.batch_chunk_rows,
            onnx_threads=config.batch_onnx_threads,
            fanout_threshold_bytes=config.batch_fanout_threshold_bytes,
            part_bytes=config.batch_part_bytes,
            max_concurrency=config.batch_max_concurrency,
            map_concurrency=config.batch_map_concurrency,
            registry_cache_seconds=config.registry_cache_seconds,
            log_retention=log_retention,
            removal_policy=removal_policy,
            capture_sample_rate=config.capture_sample_rate,
        )

        monitoring = Monitoring(
            self,
            "Monitoring",
            env_name=config.name,
            scoring=scoring,
            data_bucket=storage.data_bucket,
            data_key=storage.data_key,
            registry_table=tables.registry_table,
            monitored_models=config.monitored_models,
            p99_latency_budget_ms=config.p99_latency_budget_ms,
            error_rate_4xx=config.error_rate_4xx_alarm,
            error_rate_5xx=config.error_rate_5xx_alarm,
            capture_sample_rate=config.capture_sample_rate,
            capture_max_records=config.capture_max_records,
            capture_max_age_seconds=config.capture_max_age_seconds,
            psi_warn=config.drift_psi_warn,
            psi_alarm=config.drift_psi_alarm,
            window_hours=config.drift_window_hours,
            min_samples=config.drift_min_samples,
            schedule_minutes=config.drift_schedule_minutes,
            alarm_email=config.alarm_email,
            fleet_alarms=[batch.dlq_alarm, batch.failure_alarm],
            pipelines=[("BatchFanOut", batch.state_machine)],
            log_retention=log_retention,
            removal_policy=removal_policy,
        )

        retraining = Retraining(
            self,
            "Retrain",
            env_name=config.name,
            model_bucket=storage.model_bucket,
            model_key=storage.model_key,
            data_bucket=storage.data_bucket,
            data_key=storage.data_key,
            registry_table=tables.registry_table,
            governance_function=governance.function,
            governance_role=governance.role,
            topic=monitoring.topic,
            training_backend=config.training_backend,
            training_memory_mb=config.training_memory_mb,
            training_timeout_minutes=config.training_timeout_minutes,
            sagemaker_instance_type=config.sagemaker_instance_type,
            validation_memory_mb=config.validation_memory_mb,
            gate_settings={
                "GATE_PARITY_TOLERANCE": repr(config.gate_parity_tolerance),
                "GATE_METRIC_TOLERANCE": repr(config.gate_metric_tolerance),
                "GATE_SEGMENT_FLOOR": repr(config.gate_segment_floor),
                "GATE_SEGMENT_MIN_ROWS": str(config.gate_segment_min_rows),
                "GATE_LATENCY_P99_MS": repr(config.gate_latency_p99_ms),
            },
            workflow_settings={
                "APPROVAL_TIMEOUT_SECONDS": str(config.approval_timeout_hours * 3600),
                "CANARY_PERCENT": repr(config.canary_percent),
                "CANARY_SECONDS": str(config.canary_minutes * 60),
                "CANARY_POLICY": json.dumps(
                    {
                        "min_requests": config.canary_min_requests,
                        "max_error_rate_delta": config.canary_max_error_rate_delta,
                        "max_latency_ratio": config.canary_max_latency_ratio,
                    },
                    sort_keys=True,
                ),
            },
            # Training + validation + the approval window + the canary + slack for the rest.
            run_timeout=Duration.minutes(
                config.training_timeout_minutes
                + 10
                + config.approval_timeout_hours * 60
                + config.canary_minutes
                + 30
            ),
            retrain_schedule=config.retrain_schedule,
            monitored_models=config.monitored_models,
            dead_letter_queue=monitoring.dead_letter_queue,
            log_retention=log_retention,
            removal_policy=removal_policy,
        )
        monitoring.add_retrain_target(retraining.drift_target())
        monitoring.add_pipeline("Retrain", retraining.state_machine)

        Tags.of(self).add("Project", "Ferry")
        Tags.of(self).add("Environment", config.name)

        # Read by the CLI (`ferry --env dev|prod`) and mirrored by `.ferry/local.json`.
        outputs = {
            "ApiUrl": api.url,
            "ModelBucketName": storage.model_bucket.bucket_name,
            "DataBucketName": storage.data_bucket.bucket_name,
            "RegistryTableName": tables.registry_table.table_name,
            "AuditTableName": tables.audit_table.table_name,
            "ScoringFunctionName": scoring.function.function_name,
            "AuditAnchorBucketName": governance.anchor_bucket.bucket_name,
            "GovernanceFunctionName": governance.function.function_name,
        }
        outputs |= {
            "BatchQueueUrl": batch.queue.queue_url,
            "BatchFunctionName": batch.function.function_name,
            "BatchStateMachineArn": batch.state_machine.state_machine_arn,
            "IdempotencyTableName": batch.idempotency_table.table_name,
        }
        outputs |= {
            "AlarmTopicArn": monitoring.topic.topic_arn,
            "DriftFunctionName": monitoring.function.function_name,
            "DashboardName": monitoring.dashboard.dashboard_name,
        }
        outputs |= {
            "RetrainStateMachineArn": retraining.state_machine.state_machine_arn,
            "TrainingFunctionName": retraining.training.function_name,
            "ValidationFunctionName": retraining.validation.function_name,
        }
        for output_id, value in outputs.items():
            CfnOutput(self, output_id, value=value)
