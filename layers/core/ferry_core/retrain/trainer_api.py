"""The trainer interface: what a trainer module defines, in one place.

A model's owner brings the code that fits it as ONE Python file (`ferry register --trainer
FILE.py --trainer-lock LOCK`). Retraining runs that file in an isolated process of the training
image and imports nothing else of it, so the file must define, at module level:

    class Trainer:                      # a class, a factory function, or an instance
        schema: InputSchema             # ferry_core.card.InputSchema: the model's input contract
        target: str                     # the label column of the training data, 0/1
        segments: dict[str, dict]       # named segments for per-segment metrics (may be {}):
                                        #   {"age_band": {"feature": "age", "edges": [18, 30, 101]}}
                                        #   bands a number, {"feature": "region"} a category
        threshold: float = 0.5          # score at or above which the label is 1

        def fit(self, X: pd.DataFrame, y: np.ndarray, params: dict) -> Pipeline:
            '''Return a fitted scikit-learn Pipeline that skl2onnx converts.'''

`X` holds the schema's columns in the serving encoding (numbers, integers and booleans as
float64 with NaN for null; categories as str with "" for null): exactly what the ONNX graph
will receive, so ONNX-vs-Python parity is meaningful. `params` is the run's `--params`.

The harness does everything else identically for every trainer (ferry_core/retrain/training.py):
reading the data, the fixed-seed 75/25 split, conversion to ONNX, parity, metrics, baselines,
the candidate bundle and its lineage. The file may import only what the training image has
installed; its lock (pinned `name==version` lines) states which versions it was written
against, and a run whose image has other versions fails before the file is run: packages
cannot be installed at run time.

The trainers compiled into the training image (named by an entry point `module:attribute`,
the demo's `ferry_core.retrain.training:CreditRiskTrainer` by default) follow the same
interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ferry_core.errors import FerryError
from ferry_core.trainer_files import TRAINER_ATTRIBUTE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ferry_core.card import InputSchema

__all__ = ["REQUIRED", "TRAINER_ATTRIBUTE", "Trainer", "TrainingFailed", "instantiate"]
REQUIRED = ("schema", "target", "fit")


class TrainingFailed(FerryError):
    """Training could not produce a candidate (no data, bad data, a trainer that failed)."""

    code = "training_failed"


class Trainer(Protocol):
    """The interface above, for type checkers."""

    schema: InputSchema
    target: str
    segments: dict[str, dict[str, Any]]
    threshold: float

    def fit(self, X: pd.DataFrame, y: np.ndarray, params: dict[str, Any]) -> Any: ...


def instantiate(obj: Any, name: str) -> Trainer:
    """The trainer `obj` stands for (instantiated when it is a class or a factory)."""
    try:
        trainer = obj() if callable(obj) and not hasattr(obj, "fit") else obj
        if isinstance(trainer, type):
            trainer = trainer()
    except Exception as exc:  # the owner's constructor failed: say so with its cause
        raise TrainingFailed(
            f"trainer {name!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc
    for attr in REQUIRED:
        if not hasattr(trainer, attr):
            raise TrainingFailed(f"trainer {name!r} has no {attr!r}")
    return trainer  # type: ignore[no-any-return]
