"""A model owner's files for a model that is not credit-risk: the `tumour` classifier.

`tumour_trainer.py` and its `requirements.lock` are what `ferry register --trainer
--trainer-lock` receives; the functions here make what the owner has on their laptop before
registering (a pipeline fitted by that trainer, its data and schema) and the traffic that
drifts away from it. The demo's second-model chapter and the e2e tests share them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

HERE = Path(__file__).resolve().parent
TRAINER, LOCK = HERE / "tumour_trainer.py", HERE / "requirements.lock"
MODEL = "tumour"
TARGET = "malignant"


def owners_trainer() -> Any:
    """The owner's `Trainer`, loaded from its file as the training sandbox loads it."""
    spec = importlib.util.spec_from_file_location("tumour_trainer", TRAINER)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {TRAINER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Trainer()


def labelled() -> pd.DataFrame:
    """scikit-learn's breast-cancer data (bundled, no download), labelled 1 = malignant."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame
    return data.assign(**{TARGET: (data["target"] == 0).astype(int)}).drop(columns=["target"])


def laptop_files(where: Path) -> dict[str, Path]:
    """What the owner has before registering, written under `where`: a pipeline fitted by
    their trainer (model.joblib), train/valid CSVs, the schema, and all labelled rows."""
    from ferry_core.onboarding.builder import to_model_frame

    data = labelled()
    trainer = owners_trainer()
    train, valid = data.iloc[:420], data.iloc[420:]
    pipeline = trainer.fit(to_model_frame(train, trainer.schema), train[TARGET].to_numpy(), {})
    names = ("model.joblib", "train.csv", "valid.csv", "schema.json", "labelled.parquet")
    files = {name: where / name for name in names}
    joblib.dump(pipeline, files["model.joblib"])
    train.to_csv(files["train.csv"], index=False)
    valid.to_csv(files["valid.csv"], index=False)
    files["schema.json"].write_text(trainer.schema.model_dump_json())
    data.to_parquet(files["labelled.parquet"], index=False)
    return files


def register_args(files: dict[str, Path]) -> list[str]:
    """`ferry register tumour …` arguments: the fitted pipeline, its data, and the trainer."""
    return [
        *("register", MODEL, "--pipeline", str(files["model.joblib"])),
        *("--train", str(files["train.csv"]), "--valid", str(files["valid.csv"])),
        *("--schema", str(files["schema.json"]), "--target", TARGET),
        *("--trainer", str(TRAINER), "--trainer-lock", str(LOCK)),
    ]


def drifted(rows: int, seed: int = 7, scale: float = 1.6) -> list[dict[str, float]]:
    """`rows` tumour measurements drawn from the data with every feature scaled up: traffic
    whose distribution has moved far past the drift alarm's PSI threshold."""
    features = [f.name for f in owners_trainer().schema.features]
    sample = labelled()[features].sample(n=rows, replace=True, random_state=seed) * scale
    return sample.round(4).to_dict("records")
