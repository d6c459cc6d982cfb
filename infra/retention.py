"""Retention: how long every stored copy of data lives, one named config field per copy.

Credit applications are personal data, so every copy the platform keeps expires on a stated
schedule: S3 lifecycle rules per prefix (current versions, noncurrent versions, unfinished
multipart uploads) and DynamoDB TTLs. The governance record keeps everything and no rule
touches it: the model store's `models/`, the registry and audit tables, the audit anchors
(Object Lock). The tables below are the single source of the rules; tests/infra holds them
equal to the prefixes the code writes to. This module imports no runtime code (infra never
does), so the prefixes are restated here; the tests compare them with the core's constants.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3

from infra.config import EnvironmentConfig

# Data bucket prefixes (DESIGN §3.4): what the functions write, and what users upload.
CAPTURE_ROWS_PREFIX = "capture/rows/"
CAPTURE_REPORTS_PREFIX = "capture/reports/"
BATCH_INCOMING_PREFIX = "batch/incoming/"
BATCH_SCORED_PREFIX = "batch/scored/"
BATCH_REJECTED_PREFIX = "batch/rejected/"
BATCH_MANIFESTS_PREFIX = "batch/manifests/"
BATCH_STAGING_PREFIX = "batch/staging/"
OUTCOMES_PREFIX = "outcomes/"
TRAINING_PREFIX = "training/"  # where labelled training data lands
# Model store prefix (the rest of the model store, `models/`, is kept forever)
CANDIDATES_PREFIX = "candidates/"  # where training writes a run's candidate bundle


@dataclass(frozen=True)
class Retention:
    """One lifecycle rule: objects under `prefix` expire after the config field `days`; their
    noncurrent versions after `noncurrent` (the shared field unless the copy needs its own)."""

    rule_id: str
    prefix: str
    days: str
    noncurrent: str = "noncurrent_version_retention_days"


DATA_RETENTION: tuple[Retention, ...] = (
    Retention("CaptureRows", CAPTURE_ROWS_PREFIX, "capture_retention_days"),
    Retention("DriftReports", CAPTURE_REPORTS_PREFIX, "drift_report_retention_days"),
    Retention("BatchIncoming", BATCH_INCOMING_PREFIX, "batch_incoming_retention_days"),
    Retention("BatchScored", BATCH_SCORED_PREFIX, "batch_scored_retention_days"),
    Retention("BatchRejected", BATCH_REJECTED_PREFIX, "batch_rejected_retention_days"),
    Retention("BatchManifests", BATCH_MANIFESTS_PREFIX, "batch_manifest_retention_days"),
    Retention("BatchStaging", BATCH_STAGING_PREFIX, "batch_staging_retention_days"),
    # A model's lineage pins the training data's version: old versions live as long.
    Retention(
        "TrainingData",
        TRAINING_PREFIX,
        "training_data_retention_days",
        noncurrent="training_data_retention_days",
    ),
    Retention("Outcomes", OUTCOMES_PREFIX, "outcomes_retention_days"),
)
# The model store: candidates expire; `models/` (the governance record) has no rule at all.
MODEL_RETENTION: tuple[Retention, ...] = (
    Retention("Candidates", CANDIDATES_PREFIX, "candidate_retention_days"),
)
ACCESS_LOG_RETENTION = Retention("AccessLogs", "", "access_log_retention_days")
# The data bucket's last rule: an object under no prefix above still expires, after the longest
# period of them all (S3 applies the shortest of overlapping expirations, so it never shortens
# a prefix's own period).
DATA_FALLBACK_ID = "Unlisted"


def days(config: EnvironmentConfig, field: str) -> int:
    """The value of one retention field, in days."""
    value = getattr(config, field)
    if not isinstance(value, int):
        raise TypeError(f"{field} is not a number of days")
    return value


def lifecycle_rule(config: EnvironmentConfig, retention: Retention) -> s3.LifecycleRule:
    """Current and noncurrent versions expire, unfinished uploads are aborted, under a prefix."""
    return s3.LifecycleRule(
        id=retention.rule_id,
        prefix=retention.prefix or None,
        expiration=Duration.days(days(config, retention.days)),
        noncurrent_version_expiration=Duration.days(days(config, retention.noncurrent)),
        abort_incomplete_multipart_upload_after=Duration.days(config.incomplete_upload_days),
    )


def data_rules(config: EnvironmentConfig) -> list[s3.LifecycleRule]:
    """The data bucket's rules: one per prefix, then the fallback for anything else."""
    longest = max(days(config, r.days) for r in DATA_RETENTION)
    longest_noncurrent = max(days(config, r.noncurrent) for r in DATA_RETENTION)
    return [
        *(lifecycle_rule(config, r) for r in DATA_RETENTION),
        s3.LifecycleRule(
            id=DATA_FALLBACK_ID,
            expiration=Duration.days(longest),
            noncurrent_version_expiration=Duration.days(longest_noncurrent),
            abort_incomplete_multipart_upload_after=Duration.days(config.incomplete_upload_days),
        ),
    ]


def model_rules(config: EnvironmentConfig) -> list[s3.LifecycleRule]:
    """The model store's rules: candidates only; `models/` keeps every version."""
    return [lifecycle_rule(config, r) for r in MODEL_RETENTION]


def access_log_rules(config: EnvironmentConfig) -> list[s3.LifecycleRule]:
    """The access-log bucket's one rule, over the whole bucket."""
    return [lifecycle_rule(config, ACCESS_LOG_RETENTION)]
