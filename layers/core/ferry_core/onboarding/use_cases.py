"""Register a model from files: the user's side of `ferry register`, with no CLI in it.

Read a fitted pipeline or an ONNX file and its data (local paths or s3:// URIs), build the
candidate (conversion, parity, metrics, baselines) and capture its lineage from the training
code's checkout; `ferry_core.retrain.manual` uploads it as a candidate bundle for the
governance function to register. The command line only parses its options into a
`RegistrationRequest` and renders what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry_core.card import Lineage
from ferry_core.onboarding import intake, overrides
from ferry_core.registry.lineage import capture
from ferry_core.trainer_files import TrainerFiles

# Dependency lock files looked for in the training checkout, first found wins.
LOCK_FILES = (
    "uv.lock",
    "poetry.lock",
    "requirements.lock",
    "requirements/dev.txt",
    "requirements.txt",
)


@dataclass(frozen=True)
class RegistrationRequest:
    """What to register: exactly one of `pipeline` or `onnx`, its data and its lineage."""

    name: str
    pipeline: str | None = None
    onnx: str | None = None
    schema: str | None = None
    train: str | None = None
    valid: str | None = None
    target: str = "target"
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Overrides of the inferred schema (ferry_core.onboarding.overrides): parsed `--feature`
    # specs, merged over a partial schema file; a feature's fields here win over the file's.
    features: list[overrides.FeatureOverride] = field(default_factory=list)
    schema_overrides: str | None = None
    threshold: float = 0.5
    parity_tolerance: float = 1e-5
    reference_column: str | None = None
    description: str | None = None
    code_dir: Path = field(default_factory=Path)
    entry_point: str | None = None
    lock_file: Path | None = None
    # The owner's trainer file and its lock, stored with the version for retraining.
    trainer: Path | None = None
    trainer_lock: Path | None = None
    reason: str = ""

    def problem(self) -> str | None:
        """Why the request cannot be served as given, in the command line's words; else None."""
        if (self.pipeline is None) == (self.onnx is None):
            return "give exactly one of --pipeline or --onnx"
        if self.pipeline and not (self.train and self.valid):
            return "--pipeline needs --train and --valid data"
        if self.onnx and not self.schema:
            return "--onnx needs --schema"
        if (self.features or self.schema_overrides) and self.schema:
            return "--feature and --schema-overrides adjust the inferred schema: not with --schema"
        if (self.trainer is None) != (self.trainer_lock is None):
            return "--trainer and --trainer-lock come together (the file and its pinned lock)"
        return None

    def trainer_files(self) -> TrainerFiles | None:
        """The owner's trainer file and lock, read and checked; None without a trainer."""
        if self.trainer is None or self.trainer_lock is None:
            return None
        return TrainerFiles.from_paths(self.trainer, self.trainer_lock)

    @property
    def source(self) -> str:
        """The model file registered (the pipeline or the ONNX file)."""
        return self.pipeline or self.onnx or ""


def find_lock_file(code_dir: Path, given: Path | None = None) -> Path | None:
    """The dependency lock file: the one given, else the first of LOCK_FILES in the checkout."""
    if given:
        return given
    return next((code_dir / f for f in LOCK_FILES if (code_dir / f).is_file()), None)


def schema_overrides(req: RegistrationRequest, s3: Any) -> dict[str, overrides.FeatureOverride]:
    """The request's overrides by feature name: the file's, then `features` over them."""
    from_file: list[overrides.FeatureOverride] = []
    if req.schema_overrides:
        data, _ = intake.read_bytes(req.schema_overrides, s3)
        from_file = overrides.overrides_from_json(data, req.schema_overrides)
    return overrides.merge(from_file, req.features)


def build_candidate(req: RegistrationRequest, s3: Any) -> tuple[Any, intake.DataRef | None, Any]:
    """(built model, training data reference, validation data reference) read from the files."""
    schema = intake.read_schema(req.schema, s3) if req.schema else None
    train_df = train_ref = valid_df = valid_ref = None
    if req.train:
        train_df, train_ref = intake.read_table(req.train, s3)
    if req.valid:
        valid_df, valid_ref = intake.read_table(req.valid, s3)
    if req.pipeline:
        built = intake.build_from_pipeline(
            intake.load_pipeline(req.pipeline, s3),
            train_df,
            valid_df,
            req.target,
            schema=schema,
            segments=req.segments,
            threshold=req.threshold,
            parity_tolerance=req.parity_tolerance,
            names=(req.train or "", req.valid or ""),
            overrides=schema_overrides(req, s3),
        )
    else:
        onnx_bytes, _ = intake.read_bytes(req.source, s3)
        built = intake.build_from_onnx(
            onnx_bytes,
            schema,
            valid=valid_df,
            train=train_df,
            target=req.target,
            reference_column=req.reference_column,
            segments=req.segments,
            threshold=req.threshold,
            parity_tolerance=req.parity_tolerance,
        )
    return built, train_ref or valid_ref, valid_ref


def request_lineage(req: RegistrationRequest, data: intake.DataRef | None, actor: str) -> Lineage:
    """Lineage of the request: the checkout's commit, the lock file, the pinned training data."""
    code_dir = req.code_dir.resolve()
    lineage = capture(
        code_dir,
        req.entry_point or req.source,
        find_lock_file(code_dir, req.lock_file),
        training_data_uri=data.uri if data else None,
        training_data_sha256=data.sha256 if data else None,
        training_data_version=data.s3_version_id if data else None,
        actor=actor,
    )
    trained_at = intake.file_mtime_iso(req.source)
    return lineage.model_copy(update={"trained_at": trained_at}) if trained_at else lineage
