"""Registration from files: what `ferry register` reads on the data scientist's machine.

Two ways in:
- a fitted sklearn Pipeline (a joblib file) with its training and validation data (CSV or
  Parquet, a local path or an s3:// URI): converted to ONNX, schema derived from the data
  (or given), parity gated on the validation rows, metrics and baselines computed;
- an ONNX file with an input-schema JSON file, optionally validation data (for metrics) that
  may carry the source model's scores in a reference column (for the parity gate).

joblib executes code on load: this module runs only where the pipeline was made (never in a
Lambda), and `load_pipeline` says so. sklearn is imported only on the pipeline path.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from ferry_core.card import Artifact, Card, Feature, FeatureType, InputSchema, feature_name_problem
from ferry_core.errors import FerryError, validation_message
from ferry_core.monitoring.baseline import feature_baseline, numeric_baseline
from ferry_core.onboarding.builder import (
    DEFAULT_PARITY_TOLERANCE,
    BuiltModel,
    build,
    classification_metrics,
    parity_summary,
    records,
    segment_metrics,
    to_model_frame,
)
from ferry_core.onboarding.overrides import FeatureOverride, apply, check_names
from ferry_core.store import parse_s3_uri, sha256_hex

MAX_CATEGORIES = 500
READ_LIMIT_BYTES = 2 * 1024**3


class IntakeError(FerryError):
    """An input file is missing, unreadable or not what registration needs."""

    code = "bad_input"


@dataclass(frozen=True)
class DataRef:
    """Where a data file came from, pinned: its sha256 and, from S3, its object version."""

    uri: str
    sha256: str
    s3_version_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "sha256": self.sha256, "s3_version_id": self.s3_version_id}


def read_bytes(uri: str, s3: Any | None = None) -> tuple[bytes, DataRef]:
    """The bytes at a local path or s3:// URI, with their provenance."""
    if uri.startswith("s3://"):
        if s3 is None:
            raise IntakeError(f"{uri}: an S3 client is needed to read s3:// URIs")
        try:
            bucket, key = parse_s3_uri(uri)
            obj = s3.get_object(Bucket=bucket, Key=key)
            data = obj["Body"].read()
        except ValueError as exc:
            raise IntakeError(str(exc)) from exc
        except Exception as exc:  # botocore: NoSuchKey, AccessDenied, connection
            raise IntakeError(f"cannot read {uri}: {exc}") from exc
        return data, DataRef(uri, sha256_hex(data), obj.get("VersionId"))
    path = Path(uri).expanduser()
    if not path.is_file():
        raise IntakeError(f"{uri}: no such file")
    if path.stat().st_size > READ_LIMIT_BYTES:
        raise IntakeError(f"{uri}: larger than {READ_LIMIT_BYTES} bytes")
    data = path.read_bytes()
    return data, DataRef(str(path.resolve()), sha256_hex(data))


def read_table(uri: str, s3: Any | None = None) -> tuple[pd.DataFrame, DataRef]:
    """A CSV or Parquet table (by suffix) from a local path or an s3:// URI."""
    suffix = Path(uri.split("?", 1)[0]).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise IntakeError(f"{uri}: expected a .csv or .parquet file")
    data, ref = read_bytes(uri, s3)
    try:
        if suffix == ".csv":
            frame = pd.read_csv(io.BytesIO(data))
        else:
            frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pandas/pyarrow parse errors of many types
        raise IntakeError(f"{uri}: not a readable {suffix[1:]} table: {exc}") from exc
    if frame.empty:
        raise IntakeError(f"{uri}: the table has no rows")
    return frame, ref


def read_schema(uri: str, s3: Any | None = None) -> InputSchema:
    """An input schema JSON file: `{"features": [...]}` or a card-like `{"input_schema": ...}`."""
    data, _ = read_bytes(uri, s3)
    try:
        doc = json.loads(data)
        return InputSchema.model_validate(doc.get("input_schema", doc))
    except ValidationError as exc:
        raise IntakeError(f"{uri}: not a valid input schema: {validation_message(exc)}") from exc
    except (ValueError, AttributeError) as exc:
        raise IntakeError(f"{uri}: not a valid input schema: {str(exc)[:300]}") from exc


def load_pipeline(uri: str, s3: Any | None = None) -> Any:
    """Unpickle a fitted pipeline. joblib runs code on load: only load files you made."""
    import joblib

    data, _ = read_bytes(uri, s3)
    try:
        pipeline = joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling can raise anything
        raise IntakeError(f"{uri}: not a joblib file: {exc}") from exc
    if not hasattr(pipeline, "predict_proba"):
        raise IntakeError(f"{uri}: {type(pipeline).__name__} has no predict_proba")
    return pipeline


def feature_columns(pipeline: Any, frame: pd.DataFrame, target: str) -> list[str]:
    """The pipeline's input columns: `feature_names_in_` when fitted on a DataFrame."""
    names = getattr(pipeline, "feature_names_in_", None)
    cols = [str(c) for c in names] if names is not None else [c for c in frame if c != target]
    missing = [c for c in cols if c not in frame]
    if missing:
        raise IntakeError(f"the data lacks the pipeline's input column(s): {', '.join(missing)}")
    return cols


def infer_schema(
    frames: list[pd.DataFrame],
    columns: list[str],
    overrides: dict[str, FeatureOverride] | None = None,
) -> InputSchema:
    """An input schema derived from the data: types, observed ranges, categories, nullability.

    A column is `integer` only when its dtype is: a float column whose values happen to be
    whole stays `number`, so a client may later send 53.5. Derived bounds are the observed
    training range with `clip_and_warn` (the model never saw values beyond them). `overrides`
    (ferry_core.onboarding.overrides) state what the data cannot show: a type, business bounds,
    nullability; each is checked against the data (OverrideError names the column).
    """
    overrides = overrides or {}
    check_names(overrides, columns)
    features = []
    for name in columns:
        problem = feature_name_problem(name)
        if problem:
            raise IntakeError(f"column {name[:80]!r} cannot be a feature: its name {problem}")
        col = pd.concat([f[name] for f in frames if name in f], ignore_index=True)
        override = overrides.get(name)
        try:
            feature = _infer_feature(name, col, override.type if override else None)
            features.append(apply(feature, override, col) if override else feature)
        except ValidationError as exc:
            raise IntakeError(f"column {name!r}: {validation_message(exc)}") from exc
    try:
        return InputSchema(features=features)
    except ValidationError as exc:
        raise IntakeError(f"the input columns: {validation_message(exc)}") from exc


def _infer_feature(name: str, col: pd.Series, declared: FeatureType | None) -> Feature:
    nullable = bool(col.isna().any())
    present = col.dropna()
    if present.empty:
        raise IntakeError(f"column {name!r} has no values")
    kind = declared or _inferred_type(present)
    if kind == "boolean":
        return Feature(name=name, type="boolean", nullable=nullable)
    if kind in ("number", "integer"):
        try:
            values = pd.to_numeric(present).to_numpy(dtype=float)
        except (ValueError, TypeError) as exc:
            raise IntakeError(f"column {name!r} is declared {kind} but is not numeric") from exc
        fractional = values[np.mod(values, 1) != 0]
        if kind == "integer" and fractional.size:
            raise IntakeError(
                f"column {name!r} is declared integer but has fractional values "
                f"(such as {fractional[0]:g})"
            )
        return Feature(
            name=name,
            type=kind,
            minimum=float(values.min()),
            maximum=float(values.max()),
            nullable=nullable,
            out_of_range="clip_and_warn",
        )
    cats = sorted({str(v) for v in present})
    if len(cats) > MAX_CATEGORIES:
        raise IntakeError(f"column {name!r} has {len(cats)} distinct values; give a schema file")
    return Feature(name=name, type="category", categories=cats, nullable=nullable)


def _inferred_type(present: pd.Series) -> FeatureType:
    if pd.api.types.is_bool_dtype(present):
        return "boolean"
    if pd.api.types.is_integer_dtype(present):
        return "integer"
    if pd.api.types.is_numeric_dtype(present):
        return "number"
    return "category"


def _require_target(frame: pd.DataFrame, target: str, uri: str) -> None:
    if target not in frame:
        raise IntakeError(f"{uri}: no target column {target!r}")
    values = set(pd.unique(frame[target].dropna()))
    if not values <= {0, 1}:
        raise IntakeError(f"{uri}: target {target!r} must be 0/1 (binary classification)")


def build_from_pipeline(
    pipeline: Any,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    target: str,
    schema: InputSchema | None = None,
    segments: dict[str, dict[str, Any]] | None = None,
    threshold: float = 0.5,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
    names: tuple[str, str] = ("train", "valid"),
    overrides: dict[str, FeatureOverride] | None = None,
) -> BuiltModel:
    """Convert and measure a fitted pipeline (`ferry_core.onboarding.builder.build`) from loaded
    tables."""
    _require_target(train, target, names[0])
    _require_target(valid, target, names[1])
    cols = feature_columns(pipeline, train, target)
    if schema is not None and overrides:
        raise IntakeError("state feature overrides in the schema file, or give no schema file")
    schema = schema or infer_schema([train, valid], cols, overrides)
    if {f.name for f in schema.features} != set(cols):
        raise IntakeError("the schema's features are not the pipeline's input columns")
    _check_segments(segments, schema)
    try:
        return build(
            pipeline,
            schema,
            train,
            valid,
            target=target,
            threshold=threshold,
            segments=segments,
            parity_tolerance=parity_tolerance,
        )
    except FerryError:
        raise
    except ValidationError as exc:
        raise IntakeError(f"cannot convert the pipeline: {validation_message(exc)}") from exc
    except Exception as exc:  # skl2onnx: unsupported estimator or option
        raise IntakeError(f"cannot convert or score the pipeline: {exc}") from exc


def _check_segments(segments: dict[str, dict[str, Any]] | None, schema: InputSchema) -> None:
    for seg, spec in (segments or {}).items():
        if spec.get("feature") not in {f.name for f in schema.features}:
            raise IntakeError(f"segment {seg!r} names unknown feature {spec.get('feature')!r}")


def build_from_onnx(
    onnx_bytes: bytes,
    schema: InputSchema,
    valid: pd.DataFrame | None = None,
    train: pd.DataFrame | None = None,
    target: str = "target",
    reference_column: str | None = None,
    segments: dict[str, dict[str, Any]] | None = None,
    threshold: float = 0.5,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
) -> BuiltModel:
    """Check an ONNX file against its schema and measure it on the data given.

    The graph is loaded through the serving code (self-contained, inputs match the schema).
    With validation rows: metrics (if they carry `target`), and the parity gate if they carry
    the source model's scores in `reference_column`; baselines from `train` (else `valid`).
    """
    from ferry_core.serving.inference import OnnxModel

    probe = Card(
        name="intake-probe",
        version=1,
        input_schema=schema,
        artifact=Artifact(uri="s3://probe/probe", sha256="0" * 64, size=len(onnx_bytes)),
    )
    try:
        model = OnnxModel(probe, onnx_bytes)
    except FerryError as exc:
        raise IntakeError(f"the ONNX file does not fit the schema: {exc.message}") from exc
    _check_segments(segments, schema)
    metrics: dict[str, Any] = {}
    parity: dict[str, Any] = {}
    reference = None
    base_frame = train if train is not None else valid
    if valid is not None:
        missing = [f.name for f in schema.features if f.name not in valid]
        if missing:
            raise IntakeError(f"validation data lacks feature column(s): {', '.join(missing)}")
        scores = model.score(model.encode_rows(records(valid, schema)))
        if target in valid:
            _require_target(valid, target, "validation data")
            y = valid[target].to_numpy().astype(int)
            metrics["overall"] = classification_metrics(y, scores, threshold)
            if segments:
                metrics["segments"] = segment_metrics(valid, y, scores, threshold, segments)
        if reference_column:
            if reference_column not in valid:
                raise IntakeError(f"validation data has no reference column {reference_column!r}")
            ref = valid[reference_column].to_numpy(dtype=np.float64)
            parity = parity_summary(scores, ref, parity_tolerance)
            reference = to_model_frame(valid, schema).assign(__reference_score__=ref)
    baseline: dict[str, Any] = {}
    if base_frame is not None:
        for f in schema.features:
            values = [
                None if (isinstance(v, float) and np.isnan(v)) else v
                for v in base_frame[f.name].tolist()
            ]
            baseline[f.name] = feature_baseline(f, values)
        base_scores = model.score(model.encode_rows(records(base_frame, schema)))
        baseline["__score__"] = numeric_baseline(base_scores)
    return BuiltModel(onnx_bytes, schema, baseline, metrics, parity, reference, threshold)


def file_mtime_iso(uri: str) -> str | None:
    """When a local file was last written (the best "trained at" a joblib file offers)."""
    if uri.startswith("s3://"):
        return None
    try:
        ts = Path(uri).expanduser().stat().st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
