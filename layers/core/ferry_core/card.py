"""The model card (DESIGN.md §3.3): the contract between registration, serving and governance.

`card.json` beside the artifact and the registry record are the same document. Cards are
immutable once registered; stage moves are recorded in the registry, not by editing a card.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ferry_core.names import ModelName

FeatureType = Literal["number", "integer", "category", "boolean"]
OutOfRange = Literal["reject", "clip_and_warn"]
MAX_FEATURE_NAME = 256


def feature_name_problem(name: str) -> str | None:
    """Why `name` cannot be a feature's name, in the user's terms; None when it can.

    A name is any text a CSV header cell holds: spaces, punctuation and non-ASCII are fine.
    Control characters (a tab or newline would break a CSV or a log line) are not, nor are
    leading or trailing spaces, which CSV readers strip from headers.
    """
    if not name:
        return "is empty"
    if len(name) > MAX_FEATURE_NAME:
        return f"is {len(name)} characters long; at most {MAX_FEATURE_NAME} are allowed"
    if name != name.strip():
        return "starts or ends with white space"
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        return f"contains the control character U+{ord(bad):04X}"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One input column: its type, its bounds and what to do with a value out of bounds."""

    name: str
    type: FeatureType
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    out_of_range: OutOfRange = "reject"
    categories: list[str] | None = None
    description: str | None = None
    # The ONNX graph's input for this feature when its name differs (converters rewrite names
    # such as `mean radius` to `mean_radius`); internal, clients always send `name`.
    onnx_input: str | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        problem = feature_name_problem(name)
        if problem:
            raise ValueError(f"the feature name {name[:80]!r} {problem}")
        return name

    @property
    def graph_input(self) -> str:
        """The ONNX graph input this feature is fed to."""
        return self.onnx_input or self.name

    @model_validator(mode="after")
    def _coherent(self) -> Feature:
        if self.type == "category":
            if not self.categories:
                raise ValueError(
                    f"category feature {self.name!r} needs a non-empty categories list"
                )
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"category feature {self.name!r} lists a category twice")
            if self.minimum is not None or self.maximum is not None:
                raise ValueError(f"category feature {self.name!r} cannot have minimum/maximum")
        elif self.categories is not None:
            raise ValueError(f"only category features have categories ({self.name!r})")
        if self.type == "boolean" and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"boolean feature {self.name!r} cannot have minimum/maximum")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"feature {self.name!r}: minimum is above maximum")
        return self


class InputSchema(_Strict):
    """The ordered input features of a model version (DESIGN.md §3.2)."""

    features: list[Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> InputSchema:
        seen: dict[str, str] = {}
        for f in self.features:
            key = unicodedata.normalize("NFC", f.name)
            if key in seen:
                raise ValueError(
                    f"the feature names {seen[key]!r} and {f.name!r} are the same name "
                    "(feature names must be unique)"
                )
            seen[key] = f.name
        inputs = [f.graph_input for f in self.features]
        if len(set(inputs)) != len(inputs):
            raise ValueError("two features are fed to the same ONNX graph input")
        return self

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


class Output(_Strict):
    """How the ONNX outputs become a score and a label."""

    positive_label: int | str = 1
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    probability_output: str = "probabilities"
    positive_index: int = Field(default=1, ge=0)


class Artifact(_Strict):
    """Where the ONNX file lives and what it must hash to; checked before every load."""

    uri: str
    s3_version_id: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)
    format: Literal["onnx"] = "onnx"
    reference_uri: str | None = None
    reference_sha256: str | None = None


class Lineage(_Strict):
    """Where a version came from: code, data, dependencies, who and when."""

    git_commit: str | None = None
    git_dirty: bool | None = None
    training_data_uri: str | None = None
    training_data_version: str | None = None
    training_data_sha256: str | None = None
    entry_point: str | None = None
    dependency_lock_sha256: str | None = None
    python_version: str | None = None
    libraries: dict[str, str] = Field(default_factory=dict)
    trained_at: str | None = None
    trained_by: str | None = None
    registered_at: str | None = None
    registered_by: str | None = None
    # The owner's trainer this version was fitted by (ferry_core/retrain/trainer_api.py): the
    # module's and its lock's sha256, and where the registered copy is.
    trainer_sha256: str | None = None
    trainer_lock_sha256: str | None = None
    trainer_uri: str | None = None
    # Where a retraining run fitted it: "lambda", "sagemaker" or "local" (no image), and the
    # running image as Lambda resolved it (`repository@sha256:...`); never a guessed digest.
    trained_on: str | None = None
    image_uri: str | None = None
    image_digest: str | None = None


class NumericBaseline(_Strict):
    """Quantile bin edges and the share of training rows per bin, for PSI and KS later."""

    kind: Literal["numeric"] = "numeric"
    count: int
    null_share: float
    mean: float
    std: float
    min: float
    max: float
    bin_edges: list[float]
    bin_shares: list[float]
    quantiles: dict[str, float] = Field(default_factory=dict)
    # KS reference: the baseline's values at quantile levels (i + 0.5) / k, observed
    # values only (inverted CDF). Empty on cards registered before it existed: no KS for them.
    ks_reference: list[float] = Field(default_factory=list)


class CategoricalBaseline(_Strict):
    """The share of training rows per category (and of nulls)."""

    kind: Literal["categorical"] = "categorical"
    count: int
    null_share: float
    shares: dict[str, float]


Baseline = NumericBaseline | CategoricalBaseline


class Card(BaseModel):
    """A registered model version: everything needed to serve, audit and monitor it."""

    model_config = ConfigDict(extra="forbid")

    name: ModelName
    version: int = Field(ge=1)
    task: Literal["binary_classification"] = "binary_classification"
    description: str | None = None
    input_schema: InputSchema
    output: Output = Field(default_factory=Output)
    artifact: Artifact
    lineage: Lineage = Field(default_factory=Lineage)
    metrics: dict[str, Any] = Field(default_factory=dict)
    baseline: dict[str, Baseline] = Field(default_factory=dict)
    validation: dict[str, Any] | None = None
    status: Literal["registered", "validated", "rejected", "archived"] = "registered"
    stage_history: list[dict[str, Any]] = Field(default_factory=list)
