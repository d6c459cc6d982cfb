"""Retraining: labelled data in, a fitted sklearn Pipeline and its measurements out.

The contract a trainer fulfils is `trainer_api.py`. The harness owns everything else,
identically for every trainer: reading the data from S3 (CSV or Parquet, pinned to the S3
version it read), the deterministic train/validation split, conversion to ONNX, parity on the
validation rows, metrics and baselines, lineage, and the candidate bundle (`candidate.py`).
Which trainer a run uses is `trainer_choice.py`: one compiled into the image (an entry point
`module:attribute`, the demo's credit-risk trainer by default) runs in this process; the
owner's file registered with the model runs isolated in a child process (`sandbox.py`).

This module runs where pipelines are fitted (the training image, SageMaker, a laptop), never in
a serving function: it imports pandas and scikit-learn.
"""

from __future__ import annotations

import importlib
import io
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ferry_core.card import InputSchema, Lineage
from ferry_core.clock import now_iso
from ferry_core.errors import FerryError
from ferry_core.names import ModelName
from ferry_core.onboarding import builder
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import DEFAULT_ENTRY_POINT, RUN_ID, Bundle, write_bundle
from ferry_core.retrain.provenance import RunEnvironment, run_lineage
from ferry_core.retrain.sandbox import run_isolated
from ferry_core.retrain.trainer_api import Trainer, TrainingFailed, instantiate
from ferry_core.retrain.trainer_choice import TrainerChoice, choose_trainer
from ferry_core.settings import FunctionSettings
from ferry_core.store import parse_s3_uri, sha256_hex
from ferry_core.trainer_files import with_trainer

TRAINING_PREFIX = "training/"
MIN_ROWS = 200
MAX_TRAINING_BYTES = 2 * 1024**3
# An isolated trainer stops this long before the run's own deadline (upload and reply).
ISOLATION_MARGIN_SECONDS = 60
DEFAULT_TRAINER_TIMEOUT_SECONDS = 14 * 60


@dataclass
class CreditRiskTrainer:
    """The demo model: imputation + one-hot encoding → gradient boosting."""

    schema: InputSchema = field(default_factory=lambda: builder.CREDIT_RISK_SCHEMA)
    target: str = builder.TARGET
    segments: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"age_band": builder.AGE_BANDS}
    )
    threshold: float = 0.5

    def fit(self, X: pd.DataFrame, y: np.ndarray, params: dict[str, Any]) -> Any:
        pipe = builder.credit_risk_pipeline(
            self.schema,
            n_estimators=int(params.get("n_estimators", 100)),
            seed=int(params.get("seed", 7)),
        )
        pipe.fit(X, y)
        return pipe


def load_trainer(entry_point: str) -> Trainer:
    """Import `module:attribute` and instantiate it when it is a class or factory."""
    module_name, _, attr = entry_point.partition(":")
    if not module_name or not attr:
        raise TrainingFailed(f"entry point {entry_point!r} is not 'module:attribute'")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise TrainingFailed(f"cannot load trainer {entry_point!r}: {exc}") from exc
    return instantiate(obj, entry_point)


@dataclass
class TrainingData:
    frame: pd.DataFrame
    uri: str | None
    version_id: str | None
    sha256: str | None
    raw: bytes | None = field(default=None, repr=False)  # the object as read (isolated runs)


def latest_training_object(s3: Any, bucket: str, model: str) -> str:
    """The newest CSV/Parquet object under `training/{model}/`: where labelled data lands."""
    prefix = f"{TRAINING_PREFIX}{model}/"
    newest: tuple[Any, str] | None = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith((".csv", ".parquet")) and (
                newest is None or obj["LastModified"] > newest[0]
            ):
                newest = (obj["LastModified"], obj["Key"])
    if newest is None:
        raise TrainingFailed(f"no training data: nothing under s3://{bucket}/{prefix}")
    return f"s3://{bucket}/{newest[1]}"


def read_training_data(s3: Any, uri: str) -> TrainingData:
    """Read a CSV or Parquet object, pinned to the version read (lineage records both)."""
    bucket, key = parse_s3_uri(uri)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey as exc:
        raise TrainingFailed(f"training data {uri} does not exist") from exc
    if obj.get("ContentLength", 0) > MAX_TRAINING_BYTES:
        raise TrainingFailed(f"{uri} is over {MAX_TRAINING_BYTES} bytes: train on SageMaker")
    data = obj["Body"].read()
    frame = parse_frame(data, key, uri)
    return TrainingData(frame, uri, obj.get("VersionId"), sha256_hex(data), data)


def parse_frame(data: bytes, name: str, shown: str | None = None) -> pd.DataFrame:
    """A CSV or Parquet object's rows (by `name`'s suffix); `shown` names it in errors."""
    shown = shown or name
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(data))
        if name.endswith(".csv"):
            return pd.read_csv(io.BytesIO(data), keep_default_na=True)
    except Exception as exc:  # pyarrow/pandas parse errors: the data is bad, say which
        raise TrainingFailed(f"cannot read training data {shown}: {exc}") from exc
    raise TrainingFailed(f"training data {shown} is neither .csv nor .parquet")


def _split(
    frame: pd.DataFrame, trainer: Trainer, seed: int, valid_share: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = [f.name for f in trainer.schema.features if f.name not in frame.columns]
    if trainer.target not in frame.columns:
        missing.append(trainer.target)
    if missing:
        raise TrainingFailed(f"training data lacks column(s) {', '.join(missing)}")
    labels = frame[trainer.target]
    if labels.isna().any() or not set(labels.unique()) <= {0, 1}:
        raise TrainingFailed(f"label column {trainer.target!r} must be 0/1 with no nulls")
    if len(frame) < MIN_ROWS:
        raise TrainingFailed(f"{len(frame)} labelled rows; at least {MIN_ROWS} are needed")
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(len(frame) * (1 - valid_share))
    train = frame.iloc[order[:cut]].reset_index(drop=True)
    valid = frame.iloc[order[cut:]].reset_index(drop=True)
    return train, valid


def train_candidate(
    trainer: Trainer,
    data: TrainingData,
    params: dict[str, Any] | None = None,
    seed: int = 7,
    valid_share: float = 0.25,
) -> builder.BuiltModel:
    """Fit on the training split, measure on the validation split; returns the built model."""
    params = dict(params or {})
    train, valid = _split(data.frame, trainer, seed, valid_share)
    features = builder.to_model_frame(train, trainer.schema)
    labels = train[trainer.target].astype(int).to_numpy()
    try:
        pipeline = trainer.fit(features, labels, params)
    except FerryError:
        raise
    except Exception as exc:  # the trainer's own failure: reported with its cause
        raise TrainingFailed(f"trainer failed: {type(exc).__name__}: {exc}") from exc
    valid = valid.assign(**{trainer.target: valid[trainer.target].astype(int)})
    try:
        return builder.build(
            pipeline,
            trainer.schema,
            train,
            valid,
            target=trainer.target,
            threshold=getattr(trainer, "threshold", 0.5),
            segments=getattr(trainer, "segments", None) or None,
        )
    except Exception as exc:  # skl2onnx refusing a component is the usual cause
        raise TrainingFailed(
            f"the fitted pipeline could not be converted to ONNX or measured: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def run_training(
    *,
    s3: Any,
    model_bucket: str,
    data_bucket: str,
    model: str,
    run_id: str,
    training_data: str | None = None,
    choice: TrainerChoice | None = None,
    params: dict[str, Any] | None = None,
    lineage: Lineage | None = None,
    timeout_seconds: float = DEFAULT_TRAINER_TIMEOUT_SECONDS,
) -> tuple[Bundle, Any]:
    """Read the data, fit (in this process, or the owner's trainer in its own), measure and
    write the candidate bundle; the owner's trainer travels in the bundle."""
    choice = choice or TrainerChoice(DEFAULT_ENTRY_POINT)
    uri = training_data or latest_training_object(s3, data_bucket, model)
    data = read_training_data(s3, uri)
    lineage = lineage or Lineage()
    if choice.files is not None:
        built: Any = _fit_isolated(choice, data, params or {}, timeout_seconds)
        lineage = with_trainer(lineage, choice.files.ref, choice.uri)
    else:
        built = train_candidate(load_trainer(choice.entry_point), data, params)
    lineage = lineage.model_copy(
        update={
            "training_data_uri": data.uri,
            "training_data_version": data.version_id,
            "training_data_sha256": data.sha256,
            "entry_point": choice.entry_point,
            "trained_at": now_iso(),
        }
    )
    training = {
        "rows": len(data.frame),
        "params": params or {},
        "parity": built.parity,
        "metrics": built.metrics.get("overall", {}),
    }
    if choice.source_version is not None:
        training["trainer_from_version"] = choice.source_version
    bundle = write_bundle(
        s3, model_bucket, built, model, run_id, lineage, training=training, trainer=choice.files
    )
    return bundle, built


def _fit_isolated(
    choice: TrainerChoice, data: TrainingData, params: dict[str, Any], timeout_seconds: float
) -> Any:
    """The owner's trainer, in a child process over a scratch copy of the data."""
    assert choice.files is not None and data.raw is not None and data.uri is not None
    suffix = ".parquet" if data.uri.endswith(".parquet") else ".csv"
    with tempfile.TemporaryDirectory(prefix="ferry-trainer-") as scratch:
        return run_isolated(
            choice.files,
            data.raw,
            suffix,
            Path(scratch),
            params=params,
            timeout_seconds=timeout_seconds,
        )


class TrainingRequest(BaseModel):
    """The training step's input (from the state machine, or SageMaker hyperparameters)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName
    run_id: str = Field(pattern=RUN_ID.pattern)
    training_data: str | None = Field(default=None, pattern=r"^s3://[^/]+/.+")
    # A trainer of the training image (`module:attribute`); None: the model's own trainer.
    entry_point: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    actor: str = "ferry-retrain"
    trigger: str = "manual"
    # The run's author (the identity that started it, `alarm:<name>` or `schedule`).
    requested_by: str | None = None

    @classmethod
    def from_hyperparameters(cls, raw: Mapping[str, str]) -> TrainingRequest:
        """SageMaker passes every hyperparameter as a string; `params` travels as JSON."""
        values: dict[str, Any] = {k: v for k, v in raw.items() if v not in ("", "null")}
        if "params" in values:
            values["params"] = json.loads(values["params"])
        return cls.model_validate(values)


class TrainingSettings(FunctionSettings):
    """What the stack passes the training function / job (infra/retraining.py)."""

    model_bucket: str = Field(alias="MODEL_BUCKET")
    data_bucket: str = Field(alias="DATA_BUCKET")
    registry_table: str = Field(alias="REGISTRY_TABLE")
    lock_file: str | None = Field(default=None, alias="FERRY_LOCK_FILE")
    source_commit: str | None = Field(default=None, alias="FERRY_SOURCE_COMMIT")
    source_dirty: bool | None = Field(default=None, alias="FERRY_SOURCE_DIRTY")
    # A SageMaker job's stopping condition (its run's deadline; Lambda's is in the context).
    job_seconds: float | None = Field(default=None, alias="FERRY_JOB_SECONDS", gt=0)


def trainer_timeout(env: RunEnvironment) -> float:
    """How long an isolated trainer may run: inside the run's own deadline, with a margin
    for the upload and the reply."""
    if env.seconds_left is None:
        return DEFAULT_TRAINER_TIMEOUT_SECONDS
    return max(1.0, env.seconds_left - ISOLATION_MARGIN_SECONDS)


def run_request(
    s3: Any,
    dynamodb: Any,
    settings: TrainingSettings,
    request: TrainingRequest,
    env: RunEnvironment | None = None,
) -> dict[str, Any]:
    """One training step: choose the trainer, lineage of the code that runs, then train."""
    env = env or RunEnvironment()
    choice = choose_trainer(
        s3,
        RegistryReader(dynamodb, settings.registry_table),
        settings.model_bucket,
        request.model,
        request.entry_point,
        load_trainer(DEFAULT_ENTRY_POINT).schema,
    )
    lineage = run_lineage(
        env,
        source_commit=settings.source_commit,
        source_dirty=settings.source_dirty,
        lock_file=settings.lock_file,
        # Exactly the run's author: the four-eyes rule compares it with an approver.
        trained_by=request.requested_by or request.actor,
    )
    bundle, built = run_training(
        s3=s3,
        model_bucket=settings.model_bucket,
        data_bucket=settings.data_bucket,
        model=request.model,
        run_id=request.run_id,
        training_data=request.training_data,
        choice=choice,
        params=request.params,
        lineage=lineage,
        timeout_seconds=trainer_timeout(env),
    )
    return {
        "model": request.model,
        "run_id": request.run_id,
        "candidate_uri": bundle.uri,
        "training_data": bundle.spec.lineage.training_data_uri,
        "training_data_version": bundle.spec.lineage.training_data_version,
        "rows": int(bundle.spec.training.get("rows", 0)),
        "parity_max_abs_diff": built.parity.get("max_abs_diff"),
        "metrics": built.metrics.get("overall", {}),
        "trainer": bundle.spec.lineage.entry_point,
    }
