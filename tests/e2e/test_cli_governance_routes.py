"""`ferry` governance commands against the local platform: every change goes through the
governance API, signed as the local identity `--as` names (or, for a "deployed" stage, with
the caller's own credentials), and is recorded as that verified principal."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import joblib
import pytest
from typer.testing import CliRunner

from ferry_cli.main import app
from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, TARGET, to_model_frame
from ferry_core.store import sha256_hex
from tests.e2e.conftest import REPO_ROOT, RunningPlatform


@dataclass
class Cli:
    platform: RunningPlatform
    model: str
    files: dict[str, Path]

    def arn(self, identity: str) -> str:
        return self.platform.client("sts", identity).get_caller_identity()["Arn"]

    def s3(self, identity: str = "data-scientist") -> Any:
        return self.platform.client("s3", identity)


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory, fitted: Any) -> dict[str, Path]:
    """The user's files: a joblib pipeline, train/valid CSVs, its schema, and the validation
    rows with the source model's scores (for an ONNX file's parity)."""
    root = tmp_path_factory.mktemp("user-files")
    pipe, train, valid = fitted
    files = {
        "pipeline": root / "model.joblib",
        "train": root / "train.csv",
        "valid": root / "valid.csv",
        "onnx": root / "model.onnx",
        "schema": root / "schema.json",
        "valid_ref": root / "valid_ref.parquet",
    }
    joblib.dump(pipe, files["pipeline"])
    train.to_csv(files["train"], index=False)
    valid.to_csv(files["valid"], index=False)
    ref = pipe.predict_proba(to_model_frame(valid, CREDIT_RISK_SCHEMA))[:, 1]
    valid.assign(source_score=ref).to_parquet(files["valid_ref"], index=False)
    files["schema"].write_text(CREDIT_RISK_SCHEMA.model_dump_json())
    return files


@pytest.fixture
def cli(
    local_platform: RunningPlatform,
    user_files: dict[str, Path],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cli]:
    """The platform's `local.json` for `--env local`, and a model name of this test's own (the
    session's platform is shared)."""
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(local_platform.state_dir / "local.json"))
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:40]
    yield Cli(local_platform, f"cli-{name}".strip("-"), user_files)


def ferry(*args: Any, identity: str = "admin", ok: bool = True) -> Any:
    result = CliRunner().invoke(app, ["--as", identity, *[str(a) for a in args]])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def ferry_json(*args: Any, identity: str = "admin") -> Any:
    return json.loads(ferry(*args, "--json", identity=identity).stdout)


def _pipeline(cli: Cli) -> list[Any]:
    """`ferry register MODEL` of the user's pipeline and CSVs."""
    f = cli.files
    data = ["--train", f["train"], "--valid", f["valid"], "--target", TARGET]
    return ["register", cli.model, "--pipeline", f["pipeline"], *data]


def _register_pipeline(cli: Cli) -> dict[str, Any]:
    return ferry_json(
        *_pipeline(cli),
        "--segment",
        "age_band=age:18,30,45,60,101",
        "--code-dir",
        REPO_ROOT,
        identity="data-scientist",
    )


def _listing(model: str, *args: str) -> list[dict[str, Any]]:
    return [m for m in ferry_json("models", *args)["models"] if m["name"] == model]


def test_register_from_joblib_and_csv_records_lineage(cli: Cli) -> None:
    """Given a joblib pipeline and CSVs on disk, `ferry register` uploads a candidate and the
    governance API registers v1 with its lineage: git commit of the code, training data sha256,
    dependency lock hash, versions, and the data scientist's verified identity."""
    out = _register_pipeline(cli)
    card = out["card"]
    lin = card["lineage"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert card["version"] == 1 and out["outcome"]["audit_seq"] == 1
    assert lin["git_commit"] == head and isinstance(lin["git_dirty"], bool)
    assert lin["training_data_sha256"] == sha256_hex(cli.files["train"].read_bytes())
    assert lin["training_data_uri"].endswith("train.csv")
    assert lin["dependency_lock_sha256"] == sha256_hex(
        (REPO_ROOT / "requirements/dev.txt").read_bytes()
    )
    scientist = cli.arn("data-scientist")
    assert lin["registered_by"] == scientist == lin["trained_by"] and lin["python_version"]
    assert {"scikit-learn", "onnxruntime"} <= set(lin["libraries"])
    assert card["validation"]["passed"] and card["metrics"]["segments"]["age_band"]
    assert card["validation"]["data"]["validation_data"]["sha256"] == sha256_hex(
        cli.files["valid"].read_bytes()
    )
    assert card["validation"]["candidate"]["run_id"].startswith("manual-")
    obj = cli.s3("admin").get_object(
        Bucket=cli.platform.outputs["ModelBucketName"],
        Key=f"models/{cli.model}/v1/model.onnx",
        VersionId=card["artifact"]["s3_version_id"],
    )
    assert sha256_hex(obj["Body"].read()) == card["artifact"]["sha256"]


def test_register_from_s3_data_pins_the_object_version(cli: Cli) -> None:
    s3, bucket, f = cli.s3(), cli.platform.outputs["DataBucketName"], cli.files
    train_key, valid_key = f"training/{cli.model}/train.csv", f"training/{cli.model}/valid.csv"
    vid = s3.put_object(Bucket=bucket, Key=train_key, Body=f["train"].read_bytes())["VersionId"]
    s3.put_object(Bucket=bucket, Key=valid_key, Body=f["valid"].read_bytes())
    card = ferry_json(
        "register",
        cli.model,
        "--pipeline",
        f["pipeline"],
        "--train",
        f"s3://{bucket}/{train_key}",
        "--valid",
        f"s3://{bucket}/{valid_key}",
        "--target",
        TARGET,
        identity="data-scientist",
    )["card"]
    assert card["lineage"]["training_data_uri"] == f"s3://{bucket}/{train_key}"
    assert card["lineage"]["training_data_version"] == vid


def test_register_onnx_with_schema_and_reference(cli: Cli) -> None:
    f = cli.files
    _register_pipeline(cli)  # the ONNX file a user would hold: converted by v1's registration
    obj = cli.s3("admin").get_object(
        Bucket=cli.platform.outputs["ModelBucketName"], Key=f"models/{cli.model}/v1/model.onnx"
    )
    f["onnx"].write_bytes(obj["Body"].read())
    onnx = ["register", cli.model, "--onnx", f["onnx"], "--schema", f["schema"]]
    out = ferry_json(
        *onnx,
        "--valid",
        f["valid_ref"],
        "--train",
        f["train"],
        "--target",
        TARGET,
        "--reference-column",
        "source_score",
        identity="data-scientist",
    )
    assert out["card"]["validation"]["passed"]
    assert out["card"]["lineage"]["training_data_sha256"] == sha256_hex(f["train"].read_bytes())
    bare = ferry_json(*onnx, identity="data-scientist")
    assert bare["card"]["validation"] is None
    refused = ferry("promote", cli.model, bare["card"]["version"], identity="approver", ok=False)
    assert refused.exit_code == 1
    assert "has no validation results" in refused.stderr and refused.stderr.count("\n") == 1


def test_parity_failure_is_refused_and_nothing_registered(cli: Cli) -> None:
    result = ferry(
        *_pipeline(cli), "--parity-tolerance", "1e-12", identity="data-scientist", ok=False
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("ferry register: ONNX-vs-sklearn parity failed: max abs diff")
    assert _listing(cli.model) == []


def test_promote_rollback_show_and_audit(cli: Cli) -> None:
    """Given two versions the data scientist registered (no segment groups: this is about the
    stage moves, and the session's small model would miss the gate's segment floor), each gated
    with `ferry validate` before production, the approver promotes both and rolls back; the
    listing, the stage history and the audit trail tell the same story, each entry names who
    acted, and `audit verify` proves the chain."""
    model = cli.model
    for _ in range(2):
        ferry_json(*_pipeline(cli), "--code-dir", REPO_ROOT, identity="data-scientist")
    assert ferry_json("validate", model, "1", identity="approver")["passed"] is True
    first = ferry_json("promote", model, "1", "--reason", "first", identity="approver")
    assert first["after"] == {"production": 1}
    ferry("promote", model, "2", "--to", "staging", identity="data-scientist")
    gated = ferry_json("validate", model, "2", identity="approver")
    assert (gated["passed"], gated["champion_version"]) == (True, 1)
    ferry("promote", model, "2", "--to", "production", "--expect", "1", identity="approver")
    rolled = ferry_json("rollback", model, "--reason", "latency", identity="approver")
    assert (rolled["before"], rolled["after"]) == ({"production": 2}, {"production": 1})
    assert _listing(model) == [
        {"name": model, "stages": {"production": 1, "staging": 2}, "latest_version": 2}
    ]
    shown = ferry_json("show", model)
    assert [(h["version"], h["event"]) for h in shown["history"]["production"]] == [
        (1, "promote"),
        (2, "promote"),
        (1, "rollback"),
    ]
    assert ferry_json("show", model, "--version", "2")["card"]["version"] == 2
    scientist, approver = cli.arn("data-scientist"), cli.arn("approver")
    entries = ferry_json("audit", model)
    # Each registration also started a gate run of its own (asynchronously, as the registrant).
    trail = [(e["event"], e["actor"]) for e in entries if e["event"] != "validate"]
    assert trail == [
        ("register", scientist),
        ("register", scientist),
        ("promote", approver),
        ("promote", scientist),
        ("promote", approver),
        ("rollback", approver),
    ]
    asked = [e["actor"] for e in entries if e["event"] == "validate"]
    assert asked.count(approver) == 2 and set(asked) <= {scientist, approver}
    (report,) = ferry_json("audit", "verify", model)
    assert report["ok"] and report["anchors"] == len(entries)
    tables = ferry("show", model).stdout
    assert "production history" in tables and "rollback" in tables


def test_archive_approve_reject_and_clear_failures(cli: Cli) -> None:
    model = cli.model
    _register_pipeline(cli)
    _register_pipeline(cli)
    approved = ferry_json("approve", model, "1", "--reason", "ok", identity="approver")
    assert approved["after"] == {"status": "approved"}
    rejected = ferry_json("reject", model, "2", "--reason", "bias", identity="approver")
    assert rejected["after"] == {"status": "rejected"}
    failures = {
        ("promote", model, "2"): "is rejected",
        ("promote", model, "9"): "has no version 9",
        ("promote", model, "1", "--to", "live"): "--to must be production or staging",
        ("rollback", model): "no earlier production version",
        ("archive", model, "2"): "already rejected",
        ("show", "nope"): "no model named 'nope'",
        ("audit", "nope"): "no audit entries for 'nope'",
        (
            "register",
            model,
            "--pipeline",
            "/no/such.joblib",
            "--train",
            "/x.csv",
            "--valid",
            "/y.csv",
        ): "no such file",
        ("models", "--env", "staging"): "unknown environment",
    }
    for args, message in failures.items():
        result = ferry(*args, ok=False)
        assert result.exit_code == 1, args
        assert message in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)
    ferry("archive", model, "1", identity="data-scientist")
    assert ferry_json("show", model)["versions"][0]["status"] == "archived"


def test_a_person_may_only_take_the_decisions_their_role_grants(cli: Cli) -> None:
    """The data scientist may not promote to production nor approve (the API's IAM refuses,
    in one line); the approver may not register or retrain."""
    model = cli.model
    _register_pipeline(cli)
    for args, identity in (
        (("promote", model, "1"), "data-scientist"),
        (("approve", model, "1"), "data-scientist"),
        (("retrain", model), "approver"),
    ):
        result = ferry(*args, identity=identity, ok=False)
        assert result.exit_code == 1, args
        assert "not allowed to call this route" in result.stderr, result.stderr
        assert "execute-api:Invoke" in result.stderr and result.stderr.count("\n") == 1
    assert [e["event"] for e in ferry_json("audit", model)] == ["register"]


def test_a_deployed_stage_is_called_with_the_callers_own_credentials(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a stage resolved from its outputs (as a release pipeline's step gets them) and the
    caller's own AWS credentials in the environment, `ferry promote --env dev` (to staging, which
    registration's own checks allow) signs with those credentials, and the audit records that
    principal."""
    model = cli.model
    _register_pipeline(cli)
    outputs = {**cli.platform.outputs, "ApiUrl": cli.platform.api_url}
    for key, value in outputs.items():
        monkeypatch.setenv(f"FERRY_OUTPUT_{key}", str(value))
    monkeypatch.setenv("AWS_ENDPOINT_URL", cli.platform.info["aws_endpoint_url"])
    for key, value in cli.platform.identity("approver").environment().items():
        monkeypatch.setenv(key, value)
    # A fresh default session, as in a new `ferry` process: an earlier test's keeps its keys.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    out = ferry_json("promote", model, "1", "--to", "staging", "--env", "dev")
    assert out["after"] == {"staging": 1}
    assert _listing(model, "--env", "dev")[0]["stages"]["staging"] == 1
    entries = ferry_json("audit", model, "--env", "dev")
    # The promotion's entry (the gate its registration started records `validate` entries too).
    (promoted,) = [e for e in entries if e["event"] == "promote"]
    assert promoted["actor"] == cli.arn("approver")


def test_register_takes_real_column_names_and_declared_types(
    cli: Cli, tmp_path: Path, named_frames: Any
) -> None:
    """Given a pipeline fitted on columns such as `mean radius` and `a,b`, `ferry register`
    registers it; `--feature-type` declares a type the data alone would not give."""
    pipe, train, valid = named_frames
    joblib.dump(pipe, tmp_path / "named.joblib")
    train.to_csv(tmp_path / "named-train.csv", index=False)
    valid.to_csv(tmp_path / "named-valid.csv", index=False)
    args = ["register", cli.model, "--pipeline", tmp_path / "named.joblib"]
    args += ["--train", tmp_path / "named-train.csv", "--valid", tmp_path / "named-valid.csv"]
    registered = ferry_json(
        *args, "--feature-type", "mean radius=number", identity="data-scientist"
    )
    features = {f["name"]: f for f in registered["card"]["input_schema"]["features"]}
    assert features["mean radius"]["type"] == "number"
    assert features["a,b"]["onnx_input"] == "a_b" and registered["card"]["validation"]["passed"]
    refused = ferry(
        *args, "--feature-type", "mean perimeter=integer", identity="data-scientist", ok=False
    )
    assert refused.exit_code == 1
    assert "declared integer but has fractional values" in refused.stderr
    bad_spec = ferry(*args, "--feature-type", "mean radius=float", ok=False)
    words = " ".join(bad_spec.output.replace("│", " ").split())  # Rich wraps the message
    assert bad_spec.exit_code != 0 and "expected NAME=TYPE, TYPE one of number" in words


def test_a_schema_with_a_bad_feature_name_is_refused_in_plain_words(
    cli: Cli, tmp_path: Path
) -> None:
    schema = json.loads(CREDIT_RISK_SCHEMA.model_dump_json())
    schema["features"][0]["name"] = "age\tyears"
    (tmp_path / "bad.json").write_text(json.dumps(schema))
    result = ferry(
        "register",
        cli.model,
        "--onnx",
        cli.files["pipeline"],
        "--schema",
        tmp_path / "bad.json",
        identity="data-scientist",
        ok=False,
    )
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "'age\\tyears' contains the control character U+0009" in result.stderr
    assert "pydantic" not in result.stderr and "http" not in result.stderr


def test_register_overrides_the_inferred_schema_from_flags_and_a_file(
    cli: Cli, tmp_path: Path, named_frames: Any
) -> None:
    """Given a pipeline on real column names, `--feature` (bounds, policy) and
    `--schema-overrides` (a partial schema) reach the card; an override naming no column is
    refused in one line that offers the close match, a malformed spec as a usage error."""
    pipe, train, valid = named_frames
    joblib.dump(pipe, tmp_path / "named.joblib")
    train.to_csv(tmp_path / "named-train.csv", index=False)
    valid.to_csv(tmp_path / "named-valid.csv", index=False)
    partial = {
        "features": [
            {"name": "a,b", "categories": ["large", "medium", "small"]},
            {"name": "Ünïcode col", "maximum": None, "nullable": True},
        ]
    }
    (tmp_path / "overrides.json").write_text(json.dumps(partial))
    args = ["register", cli.model, "--pipeline", tmp_path / "named.joblib"]
    args += ["--train", tmp_path / "named-train.csv", "--valid", tmp_path / "named-valid.csv"]
    card = ferry_json(
        *args,
        "--feature",
        "mean radius=number,min=0,max=100,out_of_range=reject",
        "--schema-overrides",
        tmp_path / "overrides.json",
        identity="data-scientist",
    )["card"]
    features = {f["name"]: f for f in card["input_schema"]["features"]}
    radius = features["mean radius"]
    assert (radius["minimum"], radius["maximum"], radius["out_of_range"]) == (0, 100, "reject")
    assert features["a,b"]["categories"] == ["large", "medium", "small"]
    unicode_col = features["Ünïcode col"]
    assert unicode_col["maximum"] is None and unicode_col["nullable"] is True
    assert unicode_col["minimum"] == float(train["Ünïcode col"].min())
    unknown = ferry(*args, "--feature", "mean radus=number", identity="data-scientist", ok=False)
    assert unknown.exit_code == 1 and unknown.stderr.count("\n") == 1
    assert "'mean radus' (close matches: 'mean radius'" in unknown.stderr
    malformed = ferry(*args, "--feature", "mean radius=number,min=abc", ok=False)
    words = " ".join(malformed.output.replace("│", " ").split())  # Rich wraps the message
    assert malformed.exit_code == 2 and "min must be a finite number, not 'abc'" in words
