"""The validation function under moto: a candidate bundle in the model bucket, the champion in
the registry, the gate's report stored beside the bundle and returned to the state machine."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import ValidationError

from ferry_core.card import Lineage
from ferry_core.errors import ModelUnavailable
from ferry_core.registry.governance import validation_problem
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import (
    CandidateSpec,
    CandidateUnavailable,
    reference_parquet,
    write_bundle,
)
from ferry_core.store import sha256_hex
from ferry_local.events import LambdaContext
from ferry_local.handlers import load_handler

ROOT = Path(__file__).resolve().parents[2]
MODEL = "credit-risk"
PREFIX = f"candidates/{MODEL}"


@pytest.fixture
def handler(aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The function with the environment the stack gives it (a short latency run)."""
    for name, value in {
        "MODEL_BUCKET": aws.model_bucket,
        "REGISTRY_TABLE": aws.registry_table,
        "MODEL_CACHE_DIR": str(tmp_path / "validation-cache"),
        "GATE_LATENCY_RUNS": "40",
        "POWERTOOLS_SERVICE_NAME": "ferry-validation",
    }.items():
        monkeypatch.setenv(name, value)
    module = load_handler("validation")
    module.runtime.cache_clear()
    yield module
    module.runtime.cache_clear()


def invoke(module: ModuleType, **event: Any) -> dict[str, Any]:
    return module.lambda_handler(event, LambdaContext("ferry-validation"))


def bundle(boto: dict[str, Any], aws: Any, built: Any, run_id: str = "run-1") -> None:
    write_bundle(boto["s3"], aws.model_bucket, built, MODEL, run_id, Lineage(trained_by="tests"))


def stored_report(boto: dict[str, Any], aws: Any, run_id: str) -> dict[str, Any]:
    obj = boto["s3"].get_object(Bucket=aws.model_bucket, Key=f"{PREFIX}/{run_id}/validation.json")
    return json.loads(obj["Body"].read())


def test_a_good_candidate_passes_and_its_report_is_stored(
    handler, registered, aws, boto, candidate
) -> None:
    """Given v1 in production and a retrained candidate's bundle, when the state machine
    invokes the function, it returns passed with the report, stored as validation.json."""
    bundle(boto, aws, candidate)
    result = invoke(handler, model=MODEL, run_id="run-1")
    assert result["passed"] is True, result["summary"]
    assert result["failed_checks"] == [] and result["champion_version"] == registered.version
    assert result["report_uri"] == f"s3://{aws.model_bucket}/{PREFIX}/run-1/validation.json"
    assert stored_report(boto, aws, "run-1") == result["report"]
    checks = {c["name"]: c for c in result["report"]["checks"]}
    assert checks["metrics"]["champion_source"] == "scored"
    assert checks["latency"]["runs"] == 40  # GATE_LATENCY_RUNS reached the policy
    assert result["report"]["policy"]["latency_runs"] == 40
    json.dumps(result, allow_nan=False)  # a Step Functions task output is JSON
    card = RegistryReader(boto["dynamodb"], aws.registry_table).card(MODEL, registered.version)
    assert validation_problem(card.model_copy(update={"validation": result["report"]})) is None


def test_a_first_version_passes_with_no_champion(handler, aws, boto, candidate) -> None:
    bundle(boto, aws, candidate, "first")
    result = invoke(handler, model=MODEL, run_id="first")
    assert result["passed"] is True and result["champion_version"] is None
    assert "first version" in result["summary"]
    assert stored_report(boto, aws, "first")["passed"] is True


def test_a_worse_candidate_returns_a_rejection_with_its_reason(
    handler, registered, aws, boto, worse
) -> None:
    """A completed gate run that fails is a result (the Decide state branches on it), and the
    report is stored all the same."""
    bundle(boto, aws, worse, "worse")
    result = invoke(handler, model=MODEL, run_id="worse")
    assert result["passed"] is False and "metrics" in result["failed_checks"]
    assert result["summary"].startswith("failed ") and "candidate AUC" in result["summary"]
    assert stored_report(boto, aws, "worse")["passed"] is False


def test_a_breaking_change_flag_reaches_the_gate(handler, registered, aws, boto, candidate) -> None:
    bundle(boto, aws, candidate, "flagged")
    result = invoke(handler, model=MODEL, run_id="flagged", breaking_change=True)
    assert result["report"]["breaking_change"] is True and result["passed"] is True


def _corrupt_model(boto: dict[str, Any], aws: Any) -> None:
    boto["s3"].put_object(Bucket=aws.model_bucket, Key=f"{PREFIX}/run-1/model.onnx", Body=b"x")


def _drop_reference(boto: dict[str, Any], aws: Any) -> None:
    boto["s3"].delete_object(Bucket=aws.model_bucket, Key=f"{PREFIX}/run-1/reference.parquet")


def _garble_spec(boto: dict[str, Any], aws: Any) -> None:
    key = f"{PREFIX}/run-1/candidate.json"
    boto["s3"].put_object(Bucket=aws.model_bucket, Key=key, Body=b'{"name": "credit-risk"}')


@pytest.mark.parametrize("damage", [_corrupt_model, _drop_reference, _garble_spec])
def test_a_missing_or_corrupt_bundle_raises_candidate_unavailable(
    handler, registered, aws, boto, candidate, damage
) -> None:
    """The task fails with CandidateUnavailable (the state machine's Catch names it) and no
    report is written for a candidate that was never gated."""
    bundle(boto, aws, candidate)
    damage(boto, aws)
    with pytest.raises(CandidateUnavailable):
        invoke(handler, model=MODEL, run_id="run-1")
    with pytest.raises(boto["s3"].exceptions.NoSuchKey):
        stored_report(boto, aws, "run-1")


def test_an_absent_bundle_raises_candidate_unavailable(handler, aws) -> None:
    with pytest.raises(CandidateUnavailable, match="does not exist"):
        invoke(handler, model=MODEL, run_id="never-trained")


def test_a_champion_failing_its_integrity_check_stops_the_gate(
    handler, registered, aws, boto, candidate
) -> None:
    bucket, key = registered.artifact.uri[5:].split("/", 1)
    boto["s3"].put_object(Bucket=bucket, Key=key, Body=b"tampered")  # a new, unpinned version
    boto["s3"].delete_object(Bucket=bucket, Key=key, VersionId=registered.artifact.s3_version_id)
    bundle(boto, aws, candidate)
    with pytest.raises(ModelUnavailable):
        invoke(handler, model=MODEL, run_id="run-1")


@pytest.mark.parametrize(
    "event",
    [
        {"run_id": "run-1"},
        {"model": MODEL, "run_id": "../../etc"},
        {"model": MODEL, "run_id": "run-1", "breaking_change": "yes"},
        {"model": MODEL, "run_id": "run-1", "breaking_changes": True},
    ],
)
def test_a_malformed_event_is_the_callers_bug_and_raises(event: dict[str, Any]) -> None:
    """Refused before any client is built: the task fails and the state machine's Catch applies."""
    module = load_handler("validation")
    module.runtime.cache_clear()
    with pytest.raises(ValidationError):
        module.lambda_handler(event, LambdaContext("ferry-validation"))
    assert module.runtime.cache_info().currsize == 0


def test_the_gate_runs_without_pandas_or_scikit_learn(tmp_path: Path, candidate: Any) -> None:
    """The validation image has the batch lock (pyarrow; no pandas, no scikit-learn): given an
    interpreter that refuses those modules, the handler imports and the gate passes a candidate."""
    ref = reference_parquet(candidate.reference)
    spec = CandidateSpec(
        name=MODEL,
        run_id="run-1",
        input_schema=candidate.schema,
        metrics=candidate.metrics,
        model_sha256=sha256_hex(candidate.onnx_bytes),
        model_size=len(candidate.onnx_bytes),
        reference_sha256=sha256_hex(ref),
    )
    (tmp_path / "model.onnx").write_bytes(candidate.onnx_bytes)
    (tmp_path / "reference.parquet").write_bytes(ref)
    (tmp_path / "candidate.json").write_text(spec.model_dump_json())
    blocked = ["sklearn", "skl2onnx", "onnx", "pandas", "aws_cdk", "moto", "jsii"]
    script = f"""
import sys
from pathlib import Path
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not in the validation image: " + name)
sys.meta_path.insert(0, Block())
import functions.validation.handler
import pyarrow.parquet as pq
from ferry_core.retrain.candidate import CandidateSpec
from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.validate import run_gate
d = Path({str(tmp_path)!r})
spec = CandidateSpec.model_validate_json((d / "candidate.json").read_text())
table = pq.read_table(d / "reference.parquet")
report = run_gate(spec, (d / "model.onnx").read_bytes(), table, None, None,
                  GatePolicy(latency_runs=10))
assert report.passed, report.summary()
print("ok", len(report.checks))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok 6", out.stderr[-2000:]
