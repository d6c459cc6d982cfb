"""Per-environment settings: the ONLY place where dev and prod may differ.

Every difference between the synthesized dev and prod templates must trace back to a field of
`EnvironmentConfig`; `tests/infra/test_infra_parity.py` proves it. `PIPELINE` turns on the optional
release pipeline (infra/pipeline.py), which deploys these same environments. This module imports
pydantic only (no aws_cdk), so the CLI and the local platform can read it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS: frozenset[int] = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731}
    | {1096, 1827, 2192, 2557, 2922, 3288, 3653}
)

# API Gateway HTTP APIs cut a Lambda integration off after at most 29 s.
API_INTEGRATION_TIMEOUT_SECONDS = 29

_ACCOUNT = r"^\d{12}$"
_REGION = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"

# A Lambda function's instruction set; its image is built for the same one.
Architecture = Literal["x86_64", "arm64"]


def _days(description: str, *, default: int | None = None, minimum: int = 1) -> Any:
    """A retention period in days (infra/retention.py): required unless it has a default."""
    if default is None:
        return Field(ge=minimum, description=description)
    return Field(default=default, ge=minimum, description=description)


class FunctionArchitectures(BaseModel):
    """The architecture of each function, by its folder under functions/: the function runs
    on it and its image is built for it. arm64 (Graviton) costs about 20 % less per GB-second;
    every lock resolves for both (tests/functions/test_function_images.py proves the tree of
    the architecture chosen here). The batch image serves all five batch functions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scoring: Architecture = "x86_64"
    batch: Architecture = "x86_64"
    drift: Architecture = "x86_64"
    governance: Architecture = "x86_64"
    training: Architecture = "x86_64"
    validation: Architecture = "x86_64"


class EnvironmentConfig(BaseModel):
    """Typed, validated settings of one deployment environment (validated at synth time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9]{1,15}$", description="Stage; only in stack name.")
    account: str | None = Field(
        default=None,
        pattern=_ACCOUNT,
        description="Target account; None deploys to the account of the CLI credentials "
        "(of the pipeline's account, when the release pipeline deploys it).",
    )
    region: str = Field(pattern=_REGION)
    removal_policy: Literal["destroy", "retain"] = Field(
        description="What CloudFormation does with stateful resources when they leave the stack.",
    )

    # Scoring API
    api_auth: Literal["iam", "jwt"] = "iam"
    jwt_issuer: str | None = Field(default=None, pattern=r"^https://\S+$")
    jwt_audience: tuple[str, ...] = ()
    api_throttle_rate_limit: float = Field(gt=0, le=10_000, description="Steady requests/s.")
    api_throttle_burst_limit: int = Field(gt=0, le=5_000, description="Burst bucket size.")

    # Scoring function
    scoring_memory_mb: int = Field(ge=128, le=10_240)
    scoring_timeout_seconds: int = Field(ge=1, le=API_INTEGRATION_TIMEOUT_SECONDS)
    scoring_reserved_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Caps the scoring function's concurrency (and cost); None = account pool.",
    )
    scoring_provisioned_concurrency: int = Field(
        default=0, ge=0, description="Warm instances on the `live` alias; 0 = none."
    )
    registry_cache_seconds: int = Field(
        ge=0,
        le=3_600,
        description="How long a scoring container serves a cached stage pointer when its "
        "background refresh (every second) cannot read the registry.",
    )
    log_retention_days: int
    function_architectures: FunctionArchitectures = Field(
        default_factory=FunctionArchitectures,
        description="x86_64 or arm64 per function (function and image alike).",
    )

    # Batch scoring (infra/batch.py; functions/batch/README.md explains the limits)
    batch_memory_mb: int = Field(default=3008, ge=1024, le=10_240)
    batch_timeout_seconds: int = Field(default=900, ge=60, le=900)
    batch_chunk_rows: int = Field(default=65_536, ge=1_024, le=1_048_576)
    batch_onnx_threads: int = Field(default=2, ge=1, le=6)
    batch_fanout_threshold_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Files above this are fanned out over a Distributed Map.",
    )
    batch_part_bytes: int = Field(
        default=128 * 1024 * 1024, ge=1024 * 1024, description="Bytes of one fan-out part."
    )
    batch_max_concurrency: int = Field(
        default=10, ge=2, le=1000, description="Concurrent batch functions the queue may start."
    )
    batch_map_concurrency: int = Field(default=20, ge=1, le=1000)

    # Governance and alarms
    p99_latency_budget_ms: int = Field(gt=0, description="p99 scoring latency alarm threshold.")
    approval_required: bool = Field(description="Manual approval before a promotion.")
    audit_anchor_retention_days: int = Field(
        ge=1, description="Object Lock retention of the audit chain's anchors."
    )
    alarm_email: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="E-mail subscription of the alarm topic.",
    )

    # Monitoring (infra/monitoring.py): data capture, drift and every model's alarms
    capture_sample_rate: float = Field(
        default=0.1, ge=0, le=1, description="Share of real-time requests and batch rows captured."
    )
    capture_max_records: int = Field(default=500, ge=1, le=100_000)
    capture_max_age_seconds: int = Field(default=60, ge=1, le=900)
    drift_psi_warn: float = Field(default=0.1, gt=0, le=10)
    drift_psi_alarm: float = Field(default=0.2, gt=0, le=10)
    drift_window_hours: int = Field(default=24, ge=1, le=744)
    drift_min_samples: int = Field(
        default=500, ge=50, description="Fewer captured rows in a window: no verdict."
    )
    drift_schedule_minutes: int = Field(
        default=60, ge=5, le=1440, description="How often the drift function runs."
    )
    error_rate_4xx_alarm: float = Field(
        default=0.25, gt=0, le=1, description="Share of predict requests refused with a 4xx."
    )
    error_rate_5xx_alarm: float = Field(default=0.01, gt=0, le=1)

    # Retrain & promote (infra/retraining.py): training, the validation gate, approval, canary
    training_backend: Literal["lambda", "sagemaker"] = Field(
        default="lambda",
        description="Where training runs: the training function (15 min, 10 GB), or a "
        "SageMaker training job from the same image for data or fits beyond that.",
    )
    training_memory_mb: int = Field(default=3008, ge=1024, le=10_240)
    training_timeout_minutes: int = Field(
        default=15, ge=1, le=24 * 60, description="Lambda caps this at 15; SageMaker does not."
    )
    sagemaker_instance_type: str = Field(default="ml.m5.xlarge", pattern=r"^ml\.[a-z0-9]+\.\w+$")
    validation_memory_mb: int = Field(default=3008, ge=1024, le=10_240)
    approval_timeout_hours: int = Field(
        default=72, ge=1, le=24 * 30, description="An approval not given by then rejects."
    )
    canary_percent: float = Field(
        default=10.0, ge=0, le=50, description="Share of traffic the candidate takes; 0 = switch."
    )
    canary_minutes: int = Field(default=15, ge=1, le=24 * 60)
    canary_min_requests: int = Field(
        default=100, ge=1, description="Fewer canary requests: not enough evidence, roll back."
    )
    canary_max_error_rate_delta: float = Field(default=0.01, ge=0, le=1)
    canary_max_latency_ratio: float = Field(default=1.5, ge=1, le=10)
    retrain_schedule: str | None = Field(
        default="rate(7 days)",
        pattern=r"^(rate|cron)\(.+\)$",
        description="EventBridge schedule of routine retraining; None = drift and manual only.",
    )
    gate_parity_tolerance: float = Field(default=1e-5, gt=0, le=0.1)
    gate_metric_tolerance: float = Field(
        default=0.01, ge=0, le=0.5, description="AUC a candidate may lose against the champion."
    )
    gate_segment_floor: float = Field(
        default=0.6, ge=0, le=1, description="Lowest AUC any named segment may have."
    )
    gate_segment_min_rows: int = Field(default=30, ge=1)
    gate_latency_p99_ms: float = Field(default=50.0, gt=0)

    # Retention (infra/retention.py): how long each stored copy of data lives, in days. Credit
    # applications are personal data: every copy expires on a stated schedule, except the
    # governance record (models/, the registry, the audit chain and its anchors).
    capture_retention_days: int = _days("Sampled requests and batch rows under capture/rows/.")
    drift_report_retention_days: int = _days("Drift reports under capture/reports/ (statistics).")
    batch_incoming_retention_days: int = _days("Uploaded batch files under batch/incoming/.")
    batch_scored_retention_days: int = _days(
        "Scored files under batch/scored/ (inputs and scores)."
    )
    batch_rejected_retention_days: int = _days("Rejected rows, raw, under batch/rejected/.")
    batch_manifest_retention_days: int = _days(
        "Run manifests under batch/manifests/; never outlive the files they name."
    )
    batch_staging_retention_days: int = _days(
        "Fan-out parts under batch/staging/, merged within the run's 6 hours.", default=2
    )
    training_data_retention_days: int = _days(
        "Training data under training/, old versions too: a model's lineage names the version "
        "it was trained on."
    )
    outcomes_retention_days: int = _days("Realised outcome files under outcomes/.")
    candidate_retention_days: int = _days(
        "Candidate bundles under candidates/ in the model store; registration copies a "
        "candidate to models/, which keeps everything."
    )
    access_log_retention_days: int = _days("S3 server access logs of the model and data buckets.")
    noncurrent_version_retention_days: int = _days(
        "How long a replaced or expired object version stays recoverable (the buckets are "
        "versioned; training data keeps its own period)."
    )
    incomplete_upload_days: int = _days(
        "An unfinished multipart upload is aborted after this.", default=1
    )
    batch_idempotency_retention_days: int = _days(
        "TTL of the batch idempotency table's records; at least the 14 days the dead-letter "
        "queue keeps a message, so a redriven upload is still scored once.",
        default=14,
        minimum=14,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Reject combinations that would synthesize but fail (or silently mislead) at deploy."""
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            allowed = sorted(LOG_RETENTION_DAYS)
            raise ValueError(f"log_retention_days must be one of {allowed}")
        if self.api_auth == "jwt" and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("api_auth='jwt' needs jwt_issuer and at least one jwt_audience")
        if self.api_auth == "iam" and (self.jwt_issuer or self.jwt_audience):
            raise ValueError("jwt_issuer/jwt_audience are only meaningful with api_auth='jwt'")
        reserved = self.scoring_reserved_concurrency
        if reserved is not None and self.scoring_provisioned_concurrency > reserved:
            raise ValueError("scoring_provisioned_concurrency exceeds scoring_reserved_concurrency")
        if self.training_backend == "lambda" and self.training_timeout_minutes > 15:
            raise ValueError("training_timeout_minutes > 15 needs training_backend='sagemaker'")
        if self.drift_psi_warn > self.drift_psi_alarm:
            raise ValueError("drift_psi_warn must not exceed drift_psi_alarm")
        self._retention_consistent()
        return self

    def _retention_consistent(self) -> None:
        """A copy another copy depends on must not expire first."""
        manifests = self.batch_manifest_retention_days
        if min(self.batch_scored_retention_days, self.batch_rejected_retention_days) < manifests:
            raise ValueError(
                "batch_scored_retention_days and batch_rejected_retention_days must be at "
                "least batch_manifest_retention_days (a manifest names its outputs)"
            )
        if self.capture_retention_days * 24 < self.drift_window_hours:
            raise ValueError("capture_retention_days must cover drift_window_hours")
        if self.candidate_retention_days * 24 < self.approval_timeout_hours:
            raise ValueError("candidate_retention_days must cover approval_timeout_hours")


ENVIRONMENTS: dict[str, EnvironmentConfig] = {
    "dev": EnvironmentConfig(
        name="dev",
        region="us-east-1",
        removal_policy="destroy",
        api_throttle_rate_limit=50,
        api_throttle_burst_limit=100,
        scoring_memory_mb=2048,
        scoring_timeout_seconds=15,
        registry_cache_seconds=5,
        log_retention_days=14,
        p99_latency_budget_ms=250,
        batch_memory_mb=3008,
        batch_timeout_seconds=900,
        batch_fanout_threshold_bytes=256 * 1024 * 1024,
        batch_chunk_rows=65_536,
        approval_required=False,
        audit_anchor_retention_days=1,
        capture_sample_rate=1.0,
        # Dev switches a validated candidate straight away; prod runs a 10 % canary first.
        canary_percent=0.0,
        # Dev sees little traffic: a canary (`ferry retrain --canary-percent`) is judged on
        # fewer requests than in prod.
        canary_min_requests=20,
        # Dev holds test data: short retention, so little lingers.
        capture_retention_days=7,
        drift_report_retention_days=30,
        batch_incoming_retention_days=7,
        batch_scored_retention_days=7,
        batch_rejected_retention_days=7,
        batch_manifest_retention_days=7,
        training_data_retention_days=30,
        outcomes_retention_days=30,
        candidate_retention_days=7,
        access_log_retention_days=14,
        noncurrent_version_retention_days=1,
    ),
    "prod": EnvironmentConfig(
        name="prod",
        region="us-east-1",
        removal_policy="retain",
        api_throttle_rate_limit=500,
        api_throttle_burst_limit=1000,
        scoring_memory_mb=2048,
        scoring_timeout_seconds=15,
        # Needs an account concurrency quota of at least 200 (Lambda keeps 100 unreserved).
        scoring_reserved_concurrency=100,
        scoring_provisioned_concurrency=2,
        registry_cache_seconds=30,
        log_retention_days=365,
        p99_latency_budget_ms=250,
        batch_memory_mb=3008,
        batch_timeout_seconds=900,
        batch_fanout_threshold_bytes=256 * 1024 * 1024,
        batch_chunk_rows=65_536,
        approval_required=True,
        audit_anchor_retention_days=2557,
        capture_sample_rate=0.1,
        capture_retention_days=90,
        drift_report_retention_days=400,
        batch_incoming_retention_days=30,
        batch_scored_retention_days=90,
        batch_rejected_retention_days=30,
        batch_manifest_retention_days=30,
        training_data_retention_days=1096,
        outcomes_retention_days=400,
        candidate_retention_days=30,
        access_log_retention_days=365,
        noncurrent_version_retention_days=7,
    ),
}


class PipelineConfig(BaseModel):
    """Where the optional release pipeline runs and which repository branch it releases.

    The pipeline deploys `ENVIRONMENTS["dev"]` and `ENVIRONMENTS["prod"]` as they are: it has no
    settings of its own for them, so dev and prod stay what `app.py` synthesizes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str | None = Field(
        default=None,
        pattern=_ACCOUNT,
        description="The pipeline's (tooling) account; None = the account of the CLI credentials. "
        "Required when an environment names its account.",
    )
    region: str = Field(pattern=_REGION, description="The pipeline's region.")
    source: Literal["connection", "codecommit"] = Field(
        description="A CodeConnections (CodeStar) connection to GitHub, GitLab or Bitbucket, "
        "or a CodeCommit repository in the pipeline's account.",
    )
    repository: str = Field(
        pattern=r"^[\w.-]+(/[\w.-]+)?$",
        description="`owner/name` for a connection; the repository's name for CodeCommit.",
    )
    branch: str = Field(default="main", min_length=1, description="The branch released.")
    connection_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:"
        r"connection/[0-9a-f-]+$",
        description="The connection (source='connection'), created and approved in the console.",
    )
    log_retention_days: int = Field(
        default=365, ge=1, description="How long the artifact bucket's access logs are kept."
    )

    @model_validator(mode="after")
    def _source_complete(self) -> Self:
        """A connection needs its ARN and an `owner/name`; CodeCommit takes neither."""
        if self.source == "connection":
            if not self.connection_arn:
                raise ValueError("source='connection' needs connection_arn")
            if "/" not in self.repository:
                raise ValueError("source='connection' needs repository as 'owner/name'")
        elif self.connection_arn or "/" in self.repository:
            raise ValueError("source='codecommit' takes a repository name and no connection_arn")
        return self


def crosses_accounts(
    pipeline: PipelineConfig, environments: Mapping[str, EnvironmentConfig]
) -> bool:
    """Whether the pipeline deploys into an account other than its own; refuses what it cannot.

    An environment without an account deploys into the pipeline's; one that names its account
    needs the pipeline's account named too, or the two cannot be compared (nor the deploy roles
    of the target account trusted). Every environment must be in the pipeline's region: another
    region would need CDK's cross-region replication stacks, which this app does not harden.
    """
    regions = {config.region for config in environments.values()} - {pipeline.region}
    if regions:
        raise ValueError(f"the pipeline releases only in its region {pipeline.region}: {regions}")
    accounts = {config.account for config in environments.values()} - {None}
    if accounts and pipeline.account is None:
        raise ValueError("an environment names its account: name the pipeline's account too")
    return bool(accounts - {pipeline.account})


# The release pipeline (README "Release pipeline"): None = not synthesized. For example
# PipelineConfig(account="111111111111", region="us-east-1", source="connection",
#                repository="acme/ferry", connection_arn="arn:aws:codeconnections:...").
PIPELINE: PipelineConfig | None = None

for _key, _config in ENVIRONMENTS.items():
    if _key != _config.name:
        raise ValueError(f"ENVIRONMENTS[{_key!r}] is named {_config.name!r}")
