"""An owner's trainer (ferry_core/trainer_files.py, retrain/trainer_choice.py, retrain/sandbox.py):
registered with a version, proven before a run, and run in a process of its own."""

from __future__ import annotations

import importlib.util
import io
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from ferry_core.card import Lineage
from ferry_core.registry.governance import Governance
from ferry_core.registry.registration import register
from ferry_core.retrain import sandbox
from ferry_core.retrain.candidate import read_bundle, write_report
from ferry_core.retrain.trainer_api import TrainingFailed
from ferry_core.retrain.training import (
    TrainingData,
    TrainingRequest,
    TrainingSettings,
    run_request,
    train_candidate,
)
from ferry_core.retrain.workflow import Workflow, WorkflowRequest
from ferry_core.store import sha256_hex
from ferry_core.trainer_files import (
    TrainerFiles,
    TrainerMismatch,
    TrainerRefused,
    check_pins,
    installed_version,
)

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "scripts" / "ferry_cli" / "demo" / "owner_trainer"
MODEL = "tumour"
# A trainer file over one number `x`, label `y`; BODY is its `fit` (it may raise or wait).
TINY = """
import os, time
from ferry_core.card import Feature, InputSchema
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline


class Trainer:
    schema = InputSchema(features=[Feature(name="x", type="number")])
    target = "y"
    segments = None
    threshold = 0.5

    def fit(self, X, y, params):
BODY
        prep = ColumnTransformer([("x", "passthrough", ["x"])])
        return Pipeline([("prep", prep), ("m", LogisticRegression())]).fit(X, y)
"""
# What the child may see of the environment (Python may coerce the C locale into LC_CTYPE), and
# what the OpenMP runtime scikit-learn loads sets in the child itself (KMP_*).
CHILD_VARIABLES = {"PATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR"}
SET_BY_CHILD_LIBRARIES = "KMP_"


def tumour_frame() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True).frame
    return data.assign(malignant=(data["target"] == 0).astype(int)).drop(columns=["target"])


def parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def owner_files(lock: bytes | None = None) -> TrainerFiles:
    files = TrainerFiles.from_paths(FIXTURE / "tumour_trainer.py", FIXTURE / "requirements.lock")
    return TrainerFiles(files.module, lock) if lock is not None else files


def tiny(tmp_path: Path, body: str) -> TrainerFiles:
    module = TINY.replace("BODY", "\n".join(f"        {line}" for line in body.splitlines()))
    return TrainerFiles(
        module.encode(), b"scikit-learn==" + installed_version("scikit-learn").encode()
    )


def tiny_data() -> bytes:
    xs = [i / 300 for i in range(300)]
    return parquet(pd.DataFrame({"x": xs, "y": [int(x > 0.5) for x in xs]}))


def fitted_here() -> Any:
    """The tumour model built in this process from the fixture (as `ferry register` would)."""
    spec = importlib.util.spec_from_file_location("tumour_fixture", FIXTURE / "tumour_trainer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return train_candidate(module.Trainer(), TrainingData(tumour_frame(), None, None, None))


@pytest.fixture
def settings(aws) -> TrainingSettings:
    return TrainingSettings(
        MODEL_BUCKET=aws.model_bucket,
        DATA_BUCKET=aws.data_bucket,
        REGISTRY_TABLE=aws.registry_table,
    )


def _register(aws, boto, gov: Governance, files: TrainerFiles | None) -> Any:
    card, _ = register(
        fitted_here(), MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice", trainer=files
    )
    key = f"training/{MODEL}/labels.parquet"
    boto["s3"].put_object(Bucket=aws.data_bucket, Key=key, Body=parquet(tumour_frame()))
    return card


def _run(boto, settings: TrainingSettings, run_id: str) -> dict[str, Any]:
    request = TrainingRequest(model=MODEL, run_id=run_id, actor="bob")
    return run_request(boto["s3"], boto["dynamodb"], settings, request)


# -- registration -----------------------------------------------------------------------------
def test_the_trainer_is_kept_beside_the_version_with_both_hashes_in_its_lineage(
    aws, boto, gov: Governance
) -> None:
    """
    Given the owner's trainer file and lock
    When a version is registered with them
    Then both are stored under models/tumour/v1/trainer/ and the card's lineage records their
        sha256, where the file is and the entry point
    """
    files = owner_files()
    card = _register(aws, boto, gov, files)
    lin = card.lineage
    assert (lin.trainer_sha256, lin.trainer_lock_sha256) == (
        sha256_hex(files.module),
        sha256_hex(files.lock),
    )
    assert lin.entry_point == "trainer.py:Trainer"
    assert lin.trainer_uri == f"s3://{aws.model_bucket}/models/{MODEL}/v1/trainer/trainer.py"
    stored = boto["s3"].get_object(
        Bucket=aws.model_bucket, Key="models/tumour/v1/trainer/trainer.py"
    )
    assert stored["Body"].read() == files.module


@pytest.mark.parametrize(
    ("lock", "problem"),
    [
        (b"scikit-learn>=1.0\n", "not a pin"),
        (b"-e git+https://example.com/x\n", "not a pin"),
        (b"numpy==not a version\n", "not a pin"),
    ],
)
def test_a_lock_that_does_not_pin_exactly_is_refused_at_registration(
    lock: bytes, problem: str
) -> None:
    with pytest.raises(TrainerRefused, match=problem):
        TrainerFiles(owner_files().module, lock).check()


def test_a_trainer_file_that_does_not_compile_is_refused_at_registration() -> None:
    with pytest.raises(TrainerRefused, match="does not compile"):
        TrainerFiles(b"def fit(:\n", b"numpy==2.0.0\n").check()


def test_the_fixture_lock_pins_the_training_images_versions() -> None:
    """The e2e fixture's lock is what the training image installs (requirements/train.txt)."""
    image = (ROOT / "requirements" / "train.txt").read_text().splitlines()
    for line in (FIXTURE / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            assert line in image


# -- the checks before a run ------------------------------------------------------------------
def test_a_lock_the_image_does_not_satisfy_names_the_package_wanted_and_installed() -> None:
    installed = {"scikit-learn": "1.9.1", "numpy": "2.4.6"}
    check_pins(b"numpy==2.4.6\nscikit-learn==1.9.1\n", installed.get)
    with pytest.raises(TrainerMismatch) as caught:
        check_pins(b"numpy==2.4.6\nscikit-learn==1.5.0\n", installed.get)
    message = caught.value.message
    assert "scikit-learn==1.5.0" in message and "scikit-learn 1.9.1 installed" in message
    assert "cannot be installed at run time" in message and message.count(".") <= 6
    with pytest.raises(TrainerMismatch, match="has no lightgbm installed"):
        check_pins(b"lightgbm==4.0.0\n", installed.get)
    check_pins(b'pywin32==306 ; sys_platform == "win32"\n', installed.get)  # not this platform


def test_a_run_refuses_a_registered_lock_the_image_does_not_satisfy(
    aws, boto, gov: Governance, settings: TrainingSettings
) -> None:
    """
    Given a version registered with a trainer whose lock pins another scikit-learn
    When a retraining run starts
    Then it fails before anything runs, naming the package, the pin and the installed version
    """
    _register(aws, boto, gov, owner_files(b"scikit-learn==1.5.0\n"))
    with pytest.raises(TrainingFailed, match=r"pins scikit-learn==1\.5\.0 but .* 1\.9\.1"):
        _run(boto, settings, "run-lock")


def test_a_trainer_changed_after_registration_is_not_run(
    aws, boto, gov: Governance, settings: TrainingSettings
) -> None:
    """
    Given a registered trainer whose stored file was replaced afterwards
    When a retraining run starts
    Then it fails: the file does not hash to the sha256 on the card
    """
    _register(aws, boto, gov, owner_files())
    boto["s3"].put_object(
        Bucket=aws.model_bucket, Key="models/tumour/v1/trainer/trainer.py", Body=b"import os\n"
    )
    with pytest.raises(TrainingFailed, match="does not hash to the sha256"):
        _run(boto, settings, "run-swap")


def test_a_model_without_a_trainer_that_is_not_the_defaults_kind_is_refused(
    aws, boto, gov: Governance, settings: TrainingSettings
) -> None:
    """A model registered without a trainer is never retrained as a credit-risk model."""
    _register(aws, boto, gov, None)
    with pytest.raises(TrainingFailed, match="registered without a trainer"):
        _run(boto, settings, "run-none")


# -- the isolated run -------------------------------------------------------------------------
def test_a_run_fits_the_owners_trainer_and_the_bundle_carries_it_to_the_next_version(
    aws, boto, gov: Governance, settings: TrainingSettings, wf: Workflow
) -> None:
    """
    Given tumour v1 registered with its owner's trainer, and labelled data
    When a retraining run names no entry point
    Then the owner's trainer fits the candidate (parity measured by the parent), the bundle
        carries the trainer and its hashes, and registering the candidate keeps the trainer
        beside v2 with the same hashes in its lineage
    """
    files = owner_files()
    _register(aws, boto, gov, files)

    out = _run(boto, settings, "run-owner")

    bundle = read_bundle(boto["s3"], aws.model_bucket, MODEL, "run-owner")
    assert out["trainer"] == "trainer.py:Trainer" and out["parity_max_abs_diff"] < 1e-5
    assert bundle.spec.trainer == files.ref and bundle.trainer == files
    lin = bundle.spec.lineage
    assert lin.trainer_sha256 == sha256_hex(files.module) and lin.entry_point == out["trainer"]
    assert lin.trainer_uri == f"s3://{aws.model_bucket}/models/{MODEL}/v1/trainer/trainer.py"
    assert bundle.spec.training["trainer_from_version"] == 1
    assert bundle.spec.input_schema.features[0].name == "mean radius"
    write_report(boto["s3"], bundle, {"passed": True, "source": "validation", "checks": []})

    registered = wf.run(
        WorkflowRequest(action="register_candidate", model=MODEL, run_id="run-owner")
    )

    card = gov.reader.card(MODEL, registered["version"])
    assert card.lineage.trainer_sha256 == sha256_hex(files.module)
    assert card.lineage.trainer_lock_sha256 == sha256_hex(files.lock)
    key = f"models/{MODEL}/v{card.version}/trainer/requirements.lock"
    assert boto["s3"].get_object(Bucket=aws.model_bucket, Key=key)["Body"].read() == files.lock


def test_a_trainer_that_raises_fails_the_run_with_its_error(tmp_path: Path) -> None:
    files = tiny(tmp_path, 'raise RuntimeError("the feature engineering divided by zero")')
    with pytest.raises(TrainingFailed, match="RuntimeError: the feature engineering divided"):
        sandbox.run_isolated(
            files, tiny_data(), ".parquet", tmp_path, params={}, timeout_seconds=120
        )


def test_a_trainer_that_does_not_finish_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    files = tiny(tmp_path, "time.sleep(600)")
    started = time.monotonic()
    with pytest.raises(TrainingFailed, match="did not finish within 20 s"):
        sandbox.run_isolated(
            files, tiny_data(), ".parquet", tmp_path, params={}, timeout_seconds=20
        )
    assert time.monotonic() - started < 60


def test_a_trainer_sees_no_credentials_and_none_of_the_functions_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Given the parent holding AWS credentials and the function's variables
    When the trainer reports the environment it runs in
    Then it has only what the interpreter needs, HOME and TMPDIR in its scratch folder
    """
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "parent-secret")
    monkeypatch.setenv("MODEL_BUCKET", "ferry-models")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    files = tiny(
        tmp_path,
        'raise RuntimeError("ENV " + " ".join(sorted(os.environ)) + " CWD " + os.getcwd())',
    )
    with pytest.raises(TrainingFailed) as caught:
        sandbox.run_isolated(
            files, tiny_data(), ".parquet", tmp_path, params={}, timeout_seconds=120
        )
    message = caught.value.message
    seen = message.partition("ENV ")[2].partition(" CWD ")[0].split()
    names = {n for n in seen if not n.startswith(SET_BY_CHILD_LIBRARIES)}
    assert names <= CHILD_VARIABLES and {"HOME", "TMPDIR"} <= names, names
    assert "parent-secret" not in message and message.endswith(f"CWD {tmp_path}")


def test_the_parent_is_not_dumpable_while_the_trainer_runs() -> None:
    before = sandbox._prctl(sandbox.PR_GET_DUMPABLE)
    with sandbox.undumpable():
        assert sandbox._prctl(sandbox.PR_GET_DUMPABLE) == 0
    assert sandbox._prctl(sandbox.PR_GET_DUMPABLE) == before == 1
