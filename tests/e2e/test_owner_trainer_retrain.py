"""A model that is not the demo's, retrained on the local platform by its owner's trainer.

The owner fits a tumour classifier (scikit-learn's breast-cancer data, five measurements,
1 = malignant) with their own trainer file, registers it with `ferry register --trainer
--trainer-lock`, and a retraining run started the way `ferry retrain` starts one produces the
next version: fitted by that file, in its own process, through the real state machine,
training, validation and governance functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ferry_cli.demo.owner_trainer import (
    LOCK,
    MODEL,
    TRAINER,
    laptop_files,
    owners_trainer,
    register_args,
)
from ferry_core.card import Card
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import read_bundle
from ferry_core.retrain.runs import wait_run
from ferry_core.store import sha256_hex

RunningPlatform = Any  # tests/e2e/conftest.py: the `ferry local up` child process
RUN_TIMEOUT_S = 300


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
    files = laptop_files(tmp_path)
    registered = run_ferry(local_platform, *register_args(files), "--json")
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
        f.name for f in owners_trainer().schema.features
    ]
    bundle = read_bundle(local_platform.client("s3"), model_bucket, MODEL, result["run_id"])
    assert bundle.spec.trainer is not None and bundle.spec.trainer.module_sha256 == module_sha
    assert bundle.spec.training["trainer_from_version"] == v1["version"]
    used = f"s3://{model_bucket}/models/{MODEL}/v{v1['version']}/trainer/trainer.py"
    assert bundle.spec.lineage.trainer_uri == used
    reference = bundle.reference_table()
    assert reference.num_rows > 100 and "mean radius" in reference.schema.names
