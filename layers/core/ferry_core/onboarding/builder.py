"""Build a model version where a pipeline is fitted: never imported by a serving function.

`fit_credit_risk` trains the demo's credit-risk pipeline on generated data; `build` turns any
fitted sklearn Pipeline (one column per feature, with a ColumnTransformer) into everything a
registration needs: the ONNX bytes, the input schema, baselines, metrics overall and per
segment, and the ONNX-vs-sklearn parity on held-out rows, measured through the same
encoding the scoring path uses.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ferry_core.card import CategoricalBaseline, Feature, InputSchema, NumericBaseline
from ferry_core.monitoring.baseline import feature_baseline, numeric_baseline
from ferry_core.serving.inference import MISSING_CATEGORY

TARGET = "defaulted"
DEFAULT_PARITY_TOLERANCE = 1e-5

CREDIT_RISK_SCHEMA = InputSchema(
    features=[
        Feature(
            name="age",
            type="integer",
            minimum=18,
            maximum=100,
            description="applicant age in years",
        ),
        Feature(name="annual_income", type="number", minimum=0, maximum=10_000_000, nullable=True),
        Feature(name="loan_amount", type="number", minimum=500, maximum=1_000_000),
        Feature(name="loan_term_months", type="integer", minimum=6, maximum=360),
        Feature(
            name="debt_to_income",
            type="number",
            minimum=0,
            maximum=2.0,
            out_of_range="clip_and_warn",
            description="monthly debt over monthly income; above 2 is clipped",
        ),
        Feature(name="credit_history_years", type="number", minimum=0, maximum=80, nullable=True),
        Feature(name="open_accounts", type="integer", minimum=0, maximum=100),
        Feature(
            name="purpose",
            type="category",
            categories=["car", "home", "education", "business", "personal", "medical"],
            nullable=True,
        ),
        Feature(
            name="employment",
            type="category",
            categories=["salaried", "self_employed", "unemployed", "retired", "student"],
        ),
        Feature(name="prior_default", type="boolean"),
    ]
)

AGE_BANDS = {"feature": "age", "edges": [18, 30, 45, 60, 101]}


def generate_credit_data(rows: int, seed: int = 7, shift: float = 0.0) -> pd.DataFrame:
    """Realistic-looking applications with a default label; `shift` moves incomes and DTI."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows)
    income = np.round(rng.lognormal(10.8 - shift * 0.4, 0.5, rows), 2)
    income_null = rng.random(rows) < 0.05
    loan = np.round(np.clip(rng.lognormal(9.5, 0.8, rows), 500, 1_000_000), 2)
    term = rng.choice([12, 24, 36, 48, 60, 120, 240, 360], rows)
    dti = np.round(np.clip(rng.gamma(2.0, 0.15 + shift * 0.1, rows), 0, 2.0), 4)
    history = np.round(np.clip(age - 18 - rng.integers(0, 10, rows), 0, 80) * rng.random(rows), 1)
    history_null = rng.random(rows) < 0.08
    accounts = rng.poisson(4, rows)
    purpose = rng.choice(["car", "home", "education", "business", "personal", "medical"], rows)
    purpose_null = rng.random(rows) < 0.04
    employment = rng.choice(
        ["salaried", "self_employed", "unemployed", "retired", "student"],
        rows,
        p=[0.6, 0.15, 0.08, 0.1, 0.07],
    )
    prior = rng.random(rows) < 0.12
    logit = (
        -2.2
        + 2.4 * dti
        + 1.1 * prior
        - 0.02 * (age - 40)
        + 0.35 * np.log1p(loan / np.where(income_null, 40_000, income))
        - 0.04 * np.where(history_null, 5, history)
        + 0.9 * (employment == "unemployed")
        + 0.4 * (employment == "student")
        + 0.35 * (purpose == "business")
        + 0.05 * (accounts - 4)
    )
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(rows) < p).astype(int)
    df = pd.DataFrame(
        {
            "age": age,
            "annual_income": np.where(income_null, np.nan, income),
            "loan_amount": loan,
            "loan_term_months": term,
            "debt_to_income": dti,
            "credit_history_years": np.where(history_null, np.nan, history),
            "open_accounts": accounts,
            "purpose": pd.Series(purpose, dtype=object).where(~purpose_null, None),
            "employment": employment,
            "prior_default": prior,
            TARGET: y,
        }
    )
    return df


def to_model_frame(df: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """The frame the pipeline is fitted and evaluated on: the serving encoding of each column.

    Numbers, integers and booleans as float (null → NaN), categories as str (null → "").
    Fitting on exactly what the ONNX graph will receive is what makes parity meaningful.
    """
    out = {}
    for f in schema.features:
        col = df[f.name]
        if f.type == "category":
            out[f.name] = col.astype(object).where(col.notna(), MISSING_CATEGORY).astype(str)
        else:
            out[f.name] = pd.to_numeric(col.astype(object).where(col.notna(), np.nan)).astype(
                np.float64
            )
    return pd.DataFrame(out)


def credit_risk_pipeline(schema: InputSchema, n_estimators: int = 100, seed: int = 7) -> Any:
    """ColumnTransformer(imputer on numbers, one-hot on categories) → gradient boosting."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [f.name for f in schema.features if f.type != "category"]
    categorical = [f.name for f in schema.features if f.type == "category"]
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    clf = GradientBoostingClassifier(
        n_estimators=n_estimators, max_depth=3, learning_rate=0.1, random_state=seed
    )
    return Pipeline([("pre", pre), ("clf", clf)])


def to_onnx(pipeline: Any, schema: InputSchema) -> tuple[bytes, InputSchema]:
    """Convert with one graph input per feature and a plain probability tensor output.

    The converter rewrites names it does not take as identifiers (`mean radius` becomes
    `mean_radius`); the schema returned maps each feature to its graph input on the card.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial = [
        (
            f.name,
            StringTensorType([None, 1]) if f.type == "category" else FloatTensorType([None, 1]),
        )
        for f in schema.features
    ]
    onx = convert_sklearn(
        pipeline,
        initial_types=initial,
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    graph_inputs = [i.name for i in onx.graph.input]
    mapped = InputSchema(
        features=[
            f.model_copy(update={"onnx_input": g if g != f.name else None})
            for f, g in zip(schema.features, graph_inputs, strict=True)
        ]
    )
    return onx.SerializeToString(), mapped


def records(df: pd.DataFrame, schema: InputSchema) -> list[dict[str, Any]]:
    """Rows as the JSON instances a client would send (None for nulls, Python scalars)."""
    out: list[dict[str, Any]] = []
    cols = list(schema.features)
    for row in df[[f.name for f in cols]].itertuples(index=False):
        rec: dict[str, Any] = {}
        for f, v in zip(cols, row, strict=True):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                rec[f.name] = None
            elif f.type == "integer":
                rec[f.name] = int(v)
            elif f.type == "number":
                rec[f.name] = float(v)
            elif f.type == "boolean":
                rec[f.name] = bool(v)
            else:
                rec[f.name] = str(v)
        out.append(rec)
    return out


def classification_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y)
    m: dict[str, float] = {"rows": int(y.size), "positive_rate": float(y.mean())}
    if len(np.unique(y)) == 2:
        m["auc"] = float(roc_auc_score(y, scores))
        m["log_loss"] = float(log_loss(y, np.clip(scores, 1e-15, 1 - 1e-15)))
    m["accuracy"] = float(accuracy_score(y, scores >= threshold))
    m["brier"] = float(brier_score_loss(y, scores))
    return m


def segment_metrics(
    df: pd.DataFrame,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    segments: dict[str, dict[str, Any]],
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per segment: `{"age_band": {"feature": "age", "edges": [18, 30, …]}}` bands a
    numeric feature; `{"feature": "purpose"}` splits by category."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for seg_name, spec in segments.items():
        col = df[spec["feature"]]
        groups: dict[str, np.ndarray] = {}
        if "edges" in spec:
            edges = spec["edges"]
            for lo, hi in itertools.pairwise(edges):
                groups[f"{lo}-{hi - 1}" if float(hi).is_integer() else f"{lo}-{hi}"] = (
                    (col >= lo) & (col < hi)
                ).to_numpy()
        else:
            for value in sorted({str(v) for v in col.dropna().unique()}):
                groups[value] = (col.astype(str) == value).to_numpy()
        out[seg_name] = {
            g: classification_metrics(y[mask], scores[mask], threshold)
            for g, mask in groups.items()
            if mask.sum() > 0
        }
    return out


@dataclass
class BuiltModel:
    """What a registration needs, produced where the pipeline was fitted."""

    onnx_bytes: bytes
    schema: InputSchema
    baseline: dict[str, NumericBaseline | CategoricalBaseline]
    metrics: dict[str, Any]
    parity: dict[str, Any]
    reference: pd.DataFrame = field(repr=False)
    threshold: float = 0.5


def build(
    pipeline: Any,
    schema: InputSchema,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    target: str = TARGET,
    threshold: float = 0.5,
    segments: dict[str, dict[str, Any]] | None = None,
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE,
) -> BuiltModel:
    """Convert a fitted pipeline and measure it: parity, metrics, baselines.

    Parity runs the ONNX graph through `OnnxModel` (the serving code) on the validation
    rows and compares with `predict_proba`; the caller gates on `parity["passed"]`.
    """
    from ferry_core.card import Artifact, Card
    from ferry_core.serving.inference import OnnxModel

    onnx_bytes, schema = to_onnx(pipeline, schema)
    frame = to_model_frame(valid, schema)
    sk_scores = pipeline.predict_proba(frame)[:, 1]
    probe = Card(
        name="parity-probe",
        version=1,
        input_schema=schema,
        artifact=Artifact(uri="s3://probe/probe", sha256="0" * 64, size=len(onnx_bytes)),
    )
    onnx_model = OnnxModel(probe, onnx_bytes)
    onnx_scores = onnx_model.score(onnx_model.encode_rows(records(valid, schema)))
    parity = parity_summary(onnx_scores, sk_scores, parity_tolerance)
    y = valid[target].to_numpy()
    metrics: dict[str, Any] = {"overall": classification_metrics(y, onnx_scores, threshold)}
    if segments:
        metrics["segments"] = segment_metrics(valid, y, onnx_scores, threshold, segments)
        # How the segments were cut, so validation can cut a later candidate's rows the same way.
        metrics["segment_definitions"] = segments
    baseline: dict[str, NumericBaseline | CategoricalBaseline] = {}
    for f in schema.features:
        values = [
            None if (isinstance(v, float) and np.isnan(v)) else v for v in train[f.name].tolist()
        ]
        baseline[f.name] = feature_baseline(f, values)
    train_scores = pipeline.predict_proba(to_model_frame(train, schema))[:, 1]
    baseline["__score__"] = numeric_baseline(train_scores)
    reference = to_model_frame(valid, schema).assign(
        __reference_score__=sk_scores, __label__=y.astype(np.int64)
    )
    return BuiltModel(onnx_bytes, schema, baseline, metrics, parity, reference, threshold)


def fit_credit_risk(
    rows: int = 6000, n_estimators: int = 100, seed: int = 7
) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """Train the demo pipeline; returns (pipeline, train frame, validation frame)."""
    df = generate_credit_data(rows, seed=seed)
    cut = int(rows * 0.75)
    train, valid = df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True)
    pipe = credit_risk_pipeline(CREDIT_RISK_SCHEMA, n_estimators=n_estimators, seed=seed)
    pipe.fit(to_model_frame(train, CREDIT_RISK_SCHEMA), train[TARGET].to_numpy())
    return pipe, train, valid


def build_credit_risk(rows: int = 6000, n_estimators: int = 100, seed: int = 7) -> BuiltModel:
    """The demo's model, end to end: generated data → fitted pipeline → measured ONNX."""
    pipe, train, valid = fit_credit_risk(rows, n_estimators, seed)
    return build(pipe, CREDIT_RISK_SCHEMA, train, valid, segments={"age_band": AGE_BANDS})


def parity_summary(scores: np.ndarray, reference: np.ndarray, tolerance: float) -> dict[str, Any]:
    """How far the ONNX scores are from the source pipeline's on the same rows, and whether
    that is within `tolerance` (the card's parity record)."""
    diff = np.abs(scores - reference)
    return {
        "rows": int(diff.size),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "tolerance": tolerance,
        "passed": bool(diff.max() <= tolerance),
    }
