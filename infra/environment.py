"""Every function's environment variables, each function's in one builder.

A function reads its variables through its settings model in the core (the names are the
model's field aliases); tests/infra/test_infra_environment.py holds each builder's names equal
to that model's. The Powertools variables are read by Powertools itself, not by the settings.
Values come from the environment's config (infra/config.py) and the names of the resources a
construct created; nothing else.
"""

from __future__ import annotations

import json

from infra.config import EnvironmentConfig

NAMESPACE = "Ferry"  # Powertools metrics namespace of every function
# Each function's POWERTOOLS_SERVICE_NAME, which is also the `service` dimension of its metrics.
SCORING_SERVICE = "ferry-scoring"
BATCH_SERVICE = "ferry-batch"
DRIFT_SERVICE = "ferry-drift"
GOVERNANCE_SERVICE = "ferry-governance"
TRAINING_SERVICE = "ferry-training"
VALIDATION_SERVICE = "ferry-validation"

MODEL_CACHE_DIR = "/tmp/ferry-models"  # /tmp is the only writable path in Lambda.
CAPTURE_MAX_BATCH_ROWS = 10_000  # Rows one batch run contributes to the drift sample at most.
TRAINING_LOCK_FILE = "/var/task/train.lock"  # The training image's lock (SageMaker jobs).
FAST_PERIOD_SECONDS = 60  # Scoring and batch metrics: one datapoint a minute.
# A model's latency and error-rate alarms: 3 breaching minutes out of 5, so one slow request
# burst is no page.
FAST_EVALUATION = (5, 3)
# A warm scoring container re-reads its cached stage pointers this often (one BatchGetItem,
# off the request path), so a rollback reaches it in about a second whatever the cache TTL.
REGISTRY_REFRESH_SECONDS = 1.0


def _powertools(service: str) -> dict[str, str]:
    """Read by Powertools itself (logger, metrics, tracer), not by a settings model."""
    return {
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def scoring_variables(
    config: EnvironmentConfig,
    *,
    model_bucket: str,
    data_bucket: str,
    registry_table: str,
) -> dict[str, str]:
    """The scoring function: the model store, and the sample of requests it captures.

    No audit table: scoring only reads the registry, and writes nothing but capture rows.
    """
    return {
        "FERRY_ENV": config.name,
        "MODEL_BUCKET": model_bucket,
        "DATA_BUCKET": data_bucket,
        "REGISTRY_TABLE": registry_table,
        "REGISTRY_CACHE_SECONDS": str(config.registry_cache_seconds),
        "REGISTRY_REFRESH_SECONDS": repr(REGISTRY_REFRESH_SECONDS),
        "MODEL_CACHE_DIR": MODEL_CACHE_DIR,
        **_powertools(SCORING_SERVICE),
        "CAPTURE_SAMPLE_RATE": str(config.capture_sample_rate),
        "CAPTURE_MAX_RECORDS": str(config.capture_max_records),
        "CAPTURE_MAX_AGE_SECONDS": str(config.capture_max_age_seconds),
    }


def governance_variables(
    config: EnvironmentConfig,
    *,
    model_bucket: str,
    registry_table: str,
    audit_table: str,
    anchor_bucket: str,
    validation_state_machine: str,
    retrain_machine: str,
) -> dict[str, str]:
    """The governance function: the registry, the audit trail, the workflow's settings, the
    retraining state machine it starts and the one that validates a registered version."""
    canary_policy = {
        "min_requests": config.canary_min_requests,
        "max_error_rate_delta": config.canary_max_error_rate_delta,
        "max_latency_ratio": config.canary_max_latency_ratio,
    }
    return {
        "FERRY_ENV": config.name,
        "MODEL_BUCKET": model_bucket,
        "REGISTRY_TABLE": registry_table,
        "AUDIT_TABLE": audit_table,
        "AUDIT_ANCHOR_BUCKET": anchor_bucket,
        "RETRAIN_STATE_MACHINE_ARN": retrain_machine,
        "EVENT_BUS_NAME": "default",
        "APPROVAL_REQUIRED": "true" if config.approval_required else "false",
        "VALIDATION_STATE_MACHINE_ARN": validation_state_machine,
        "MODEL_CACHE_DIR": MODEL_CACHE_DIR,
        **_powertools(GOVERNANCE_SERVICE),
        "APPROVAL_TIMEOUT_SECONDS": str(config.approval_timeout_hours * 3600),
        "CANARY_PERCENT": repr(config.canary_percent),
        "CANARY_SECONDS": str(config.canary_minutes * 60),
        "CANARY_POLICY": json.dumps(canary_policy, sort_keys=True),
    }


def model_alarm_variables(config: EnvironmentConfig, *, topic_arn: str) -> dict[str, str]:
    """The governance function's model alarms (ferry_core/monitoring/alarms.py AlarmSettings):
    the metrics they watch, the thresholds and periods of this environment, and their topic."""
    periods, datapoints = FAST_EVALUATION
    settings = {
        "namespace": NAMESPACE,
        "scoring_service": SCORING_SERVICE,
        "batch_service": BATCH_SERVICE,
        "drift_service": DRIFT_SERVICE,
        "latency_p99_ms": config.p99_latency_budget_ms,
        "error_rate_4xx": config.error_rate_4xx_alarm,
        "error_rate_5xx": config.error_rate_5xx_alarm,
        "drift_psi": config.drift_psi_alarm,
        "fast_period_seconds": FAST_PERIOD_SECONDS,
        "fast_evaluation_periods": periods,
        "fast_datapoints_to_alarm": datapoints,
        "drift_period_seconds": config.drift_schedule_minutes * 60,
    }
    return {
        "MODEL_ALARMS": json.dumps(settings, sort_keys=True),
        "ALARM_TOPIC_ARN": topic_arn,
    }


def batch_variables(
    config: EnvironmentConfig,
    *,
    model_bucket: str,
    registry_table: str,
    audit_table: str,
    anchor_bucket: str,
    idempotency_table: str,
    state_machine_arn: str | None = None,
) -> dict[str, str]:
    """A batch function; only the queue consumer, which starts fan-outs, gets the machine.

    No data bucket: each run reads the bucket of the upload it is given.
    """
    variables = {
        "FERRY_ENV": config.name,
        "MODEL_BUCKET": model_bucket,
        "REGISTRY_TABLE": registry_table,
        "AUDIT_TABLE": audit_table,
        "AUDIT_ANCHOR_BUCKET": anchor_bucket,
        "EVENT_BUS_NAME": "default",
        "IDEMPOTENCY_TABLE": idempotency_table,
        # The `expiration` (TTL) every record of the idempotency table is written with.
        "IDEMPOTENCY_SECONDS": str(config.batch_idempotency_retention_days * 24 * 3600),
        "REGISTRY_CACHE_SECONDS": str(config.registry_cache_seconds),
        "MODEL_CACHE_DIR": MODEL_CACHE_DIR,
        "ONNX_THREADS": str(config.batch_onnx_threads),
        "BATCH_CHUNK_ROWS": str(config.batch_chunk_rows),
        "BATCH_FANOUT_THRESHOLD_BYTES": str(config.batch_fanout_threshold_bytes),
        "BATCH_PART_BYTES": str(config.batch_part_bytes),
        # A sample of every committed run's scored rows feeds the drift function.
        "CAPTURE_SAMPLE_RATE": repr(config.capture_sample_rate),
        "CAPTURE_MAX_BATCH_ROWS": str(CAPTURE_MAX_BATCH_ROWS),
        **_powertools(BATCH_SERVICE),
    }
    if state_machine_arn is not None:
        variables["BATCH_STATE_MACHINE_ARN"] = state_machine_arn
    return variables


def drift_variables(
    config: EnvironmentConfig, *, data_bucket: str, registry_table: str
) -> dict[str, str]:
    """The drift function: where captured rows are, and the thresholds of a verdict."""
    return {
        "FERRY_ENV": config.name,
        "DATA_BUCKET": data_bucket,
        "REGISTRY_TABLE": registry_table,
        "DRIFT_PSI_WARN": str(config.drift_psi_warn),
        "DRIFT_PSI_ALARM": str(config.drift_psi_alarm),
        "DRIFT_WINDOW_HOURS": str(config.drift_window_hours),
        "DRIFT_MIN_SAMPLES": str(config.drift_min_samples),
        **_powertools(DRIFT_SERVICE),
    }


def training_variables(
    *, model_bucket: str, data_bucket: str, registry_table: str, source: dict[str, str]
) -> dict[str, str]:
    """The training function: where training data is read, candidates are written and each
    model's registered trainer is found, and the source commit (infra/source.py) for lineage."""
    return {
        "MODEL_BUCKET": model_bucket,
        "DATA_BUCKET": data_bucket,
        "REGISTRY_TABLE": registry_table,
        **source,
        **_powertools(TRAINING_SERVICE),
    }


def training_job_variables(
    *,
    model_bucket: str,
    data_bucket: str,
    registry_table: str,
    source: dict[str, str],
    job_seconds: int,
) -> dict[str, str]:
    """A SageMaker training job from the training image (no Powertools outside Lambda); its
    stopping condition bounds an owner's trainer."""
    return {
        "MODEL_BUCKET": model_bucket,
        "DATA_BUCKET": data_bucket,
        "REGISTRY_TABLE": registry_table,
        **source,
        "FERRY_LOCK_FILE": TRAINING_LOCK_FILE,
        "FERRY_JOB_SECONDS": str(job_seconds),
    }


def validation_variables(
    config: EnvironmentConfig, *, model_bucket: str, registry_table: str
) -> dict[str, str]:
    """The validation function: the candidate's store and the gate's thresholds."""
    return {
        "MODEL_BUCKET": model_bucket,
        "REGISTRY_TABLE": registry_table,
        "MODEL_CACHE_DIR": MODEL_CACHE_DIR,
        "GATE_PARITY_TOLERANCE": repr(config.gate_parity_tolerance),
        "GATE_METRIC_TOLERANCE": repr(config.gate_metric_tolerance),
        "GATE_SEGMENT_FLOOR": repr(config.gate_segment_floor),
        "GATE_SEGMENT_MIN_ROWS": str(config.gate_segment_min_rows),
        "GATE_LATENCY_P99_MS": repr(config.gate_latency_p99_ms),
        **_powertools(VALIDATION_SERVICE),
    }
