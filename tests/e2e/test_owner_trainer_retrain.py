"""A model that is not the demo's, retrained on the local platform by its owner's trainer.

The owner fits a tumour classifier (scikit-learn's breast-cancer data, five measurements,
1 = malignant) with their own trainer file, registers it with `ferry register --trainer
--trainer-lock`, and a retraining run started the way `ferry retrain` starts one produces the
next version: fitted by that file, in its own process, through the real state machine,
training, validation and governance functions.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import joblib
from sklearn.datasets import load_breast_cancer

from ferry_core.card import Card
from ferry_core.onboarding.builder import to_model_frame
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import read_bundle
from ferry_core.retrain.runs import wait_run
from ferry_core.store import sha256_hex

RunningPlatform = Any  # tests/e2e/conftest.py: the `ferry local up` child process
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "owner_trainer"
TRAINER, LOCK = FIXTURE / "tumour_trainer.py", FIXTURE / "requirements.lock"
MODEL = "tumour"
RUN_TIMEOUT_S = 300


def _owners_trainer() -> Any:
    spec = importlib.util.spec_from_file_location("tumour_trainer", TRAINER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Trainer()


def _fitted_on_the_laptop(tmp_path: Path) -> dict[str, Path]:
    """What the owner has before registering: a fitted pipeline, its data and its schema."""
    data = load_breast_cancer(as_frame=True).frame
    data = data.assign(malignant=(data["target"] == 0).astype(int)).drop(columns=["target"])
    trainer = _owners_trainer()
    train, valid = data.iloc[:420], data.iloc[420:]
    frame = to_model_frame(train, trainer.schema)
    pipeline = trainer.fit(frame, train[trainer.target].to_numpy(), {})
    files = {name: tmp_path / name for name in ("model.joblib", "train.csv", "valid.csv")}
    joblib.dump(pipeline, files["model.joblib"])
    train.to_csv(files["train.csv"], index=False)
    valid.to_csv(files["valid.csv"], index=False)
    files["schema.json"] = tmp_path / "schema.json"
    files["schema.json"].write_text(trainer.schema.model_dump_json())
    files["labelled.parquet"] = tmp_path / "labelled.parquet"
    data.to_parquet(files["labelled.parquet"], index=False)
    return files


def _card(platform: RunningPlatform, version: int) -> Card:
    reader = RegistryReader(platform.client("dynamodb"), platform.outputs["RegistryTableName"])
    return reader.card(MODEL, version)


def test_a_model_is_retrained_by_the_trainer_its_owner_registered(
    local_platform: RunningPlatform, run_ferry: Any, tmp_path: Path
) -> None:
    """
    Given tumour v1 registered with `ferry register --trainer FILE --trainer-lock LOCK`, and
        labelled data under training/tumour/
    When a retraining run is started as `ferry retrain` starts one (no entry point named)
    Then it ends promoted, and the new version and its candidate record the owner's file and
        lock by sha256 and entry point, carry the trainer on to the new version, were fitted
        on the tumour features, and say where they ran: the local platform, with no digest
    """
    files = _fitted_on_the_laptop(tmp_path)
    registered = run_ferry(
        local_platform,
        "register",
        MODEL,
        "--pipeline",
        str(files["model.joblib"]),
        "--train",
        str(files["train.csv"]),
        "--valid",
        str(files["valid.csv"]),
        "--schema",
        str(files["schema.json"]),
        "--target",
        "malignant",
        "--trainer",
        str(TRAINER),
        "--trainer-lock",
        str(LOCK),
        "--json",
    )
    assert registered.returncode == 0, registered.stderr
    v1 = json.loads(registered.stdout)["card"]
    module_sha, lock_sha = sha256_hex(TRAINER.read_bytes()), sha256_hex(LOCK.read_bytes())
    assert (v1["lineage"]["trainer_sha256"], v1["lineage"]["trainer_lock_sha256"]) == (
        module_sha,
        lock_sha,
    )
    bucket = local_platform.outputs["DataBucketName"]
    local_platform.client("s3", "data-scientist").put_object(
        Bucket=bucket,
        Key=f"training/{MODEL}/labelled.parquet",
        Body=files["labelled.parquet"].read_bytes(),
    )

    body = {"model": MODEL, "reason": "owner's trainer", "canary_percent": 0}
    status, _, started = local_platform.request(
        "POST", "/v1/governance/retrain", body, identity="data-scientist"
    )
    assert status == 202, started
    result = wait_run(local_platform.client("stepfunctions"), started["execution"], RUN_TIMEOUT_S)

    assert result["outcome"].get("status") == "promoted", result
    card = _card(local_platform, int(result["outcome"]["version"]))
    lin = card.lineage
    assert (lin.trainer_sha256, lin.trainer_lock_sha256) == (module_sha, lock_sha)
    assert lin.entry_point == "trainer.py:Trainer" and lin.trained_by
    model_bucket = local_platform.outputs["ModelBucketName"]
    kept = f"s3://{model_bucket}/models/{MODEL}/v{card.version}/trainer/trainer.py"
    assert lin.trainer_uri == kept
    assert (lin.trained_on, lin.image_uri, lin.image_digest) == ("local", None, None)
    assert [f.name for f in card.input_schema.features] == [
        f.name for f in _owners_trainer().schema.features
    ]
    bundle = read_bundle(local_platform.client("s3"), model_bucket, MODEL, result["run_id"])
    assert bundle.spec.trainer is not None and bundle.spec.trainer.module_sha256 == module_sha
    assert bundle.spec.training["trainer_from_version"] == v1["version"]
    used = f"s3://{model_bucket}/models/{MODEL}/v{v1['version']}/trainer/trainer.py"
    assert bundle.spec.lineage.trainer_uri == used
    reference = bundle.reference_table()
    assert reference.num_rows > 100 and "mean radius" in reference.schema.names
