"""`ferry` governance commands against a local platform (a moto server on 127.0.0.1 described by
`.ferry/local.json`) and against a "deployed" stack resolved through CloudFormation."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import joblib
import pytest
import requests
from typer.testing import CliRunner

from ferry_cli.main import app
from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, TARGET, to_model_frame
from ferry_core.store import sha256_hex
from ferry_local import moto_hooks
from ferry_local.handlers import REPO_ROOT
from ferry_local.moto_stack import StackResources, create_identities, create_resources

MODEL = "credit-risk"
OUTPUTS = {
    "ModelBucketName": "model_bucket",
    "DataBucketName": "data_bucket",
    "RegistryTableName": "registry_table",
    "AuditTableName": "audit_table",
    "AuditAnchorBucketName": "anchor_bucket",
}


@dataclass
class Local:
    url: str
    res: StackResources
    files: dict[str, Path]

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.url)


@pytest.fixture
def local(tmp_path, monkeypatch, fitted) -> Iterator[Local]:
    """A moto server on a free port with Ferry's resources, `local.json` pointing at it, and
    the user's files: a joblib pipeline, train/valid CSVs, an ONNX file and its schema."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    requests.post(f"{url}/moto-api/reset", timeout=10)  # moto's state is process-global
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    res = create_resources()
    identities = {name: i.to_json() for name, i in create_identities().items()}
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = {
        "api_url": url,
        "aws_endpoint_url": url,
        "region": "us-east-1",
        "stack": "Ferry-local",
        "outputs": {key: getattr(res, attr) for key, attr in OUTPUTS.items()},
    }
    config["identities"] = identities
    (tmp_path / "local.json").write_text(json.dumps(config))
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(tmp_path / "local.json"))
    pipe, train, valid = fitted
    files = {
        "pipeline": tmp_path / "model.joblib",
        "train": tmp_path / "train.csv",
        "valid": tmp_path / "valid.csv",
        "onnx": tmp_path / "model.onnx",
        "schema": tmp_path / "schema.json",
        "valid_ref": tmp_path / "valid_ref.parquet",
    }
    joblib.dump(pipe, files["pipeline"])
    train.to_csv(files["train"], index=False)
    valid.to_csv(files["valid"], index=False)
    ref = pipe.predict_proba(to_model_frame(valid, CREDIT_RISK_SCHEMA))[:, 1]
    valid.assign(source_score=ref).to_parquet(files["valid_ref"], index=False)
    files["schema"].write_text(CREDIT_RISK_SCHEMA.model_dump_json())
    with moto_hooks.installed():
        yield Local(url, res, files)
    requests.post(f"{url}/moto-api/reset", timeout=10)
    server.stop()


def ferry(*args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def ferry_json(*args: str) -> Any:
    return json.loads(ferry(*args, "--json").stdout)


def _register_pipeline(local: Local, *extra: str) -> dict[str, Any]:
    f = local.files
    return ferry_json(
        "register",
        MODEL,
        "--pipeline",
        f["pipeline"],
        "--train",
        f["train"],
        "--valid",
        f["valid"],
        "--target",
        TARGET,
        "--segment",
        "age_band=age:18,30,45,60,101",
        "--code-dir",
        REPO_ROOT,
        "--actor",
        "alice",
        *extra,
    )


def test_register_from_joblib_and_csv_records_lineage(local: Local) -> None:
    """Given a joblib pipeline and CSVs on disk, `ferry register` writes v1 with its lineage:
    git commit of the code, training data sha256, dependency lock hash, versions, who, when."""
    out = _register_pipeline(local)
    card = out["card"]
    lin = card["lineage"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert card["version"] == 1 and out["outcome"]["audit_seq"] == 1
    assert lin["git_commit"] == head and isinstance(lin["git_dirty"], bool)
    assert lin["training_data_sha256"] == sha256_hex(local.files["train"].read_bytes())
    assert lin["training_data_uri"].endswith("train.csv")
    assert lin["dependency_lock_sha256"] == sha256_hex(
        (REPO_ROOT / "requirements/dev.txt").read_bytes()
    )
    assert lin["registered_by"] == "alice" and lin["python_version"]
    assert {"scikit-learn", "onnxruntime"} <= set(lin["libraries"])
    assert card["validation"]["passed"] and card["metrics"]["segments"]["age_band"]
    assert card["validation"]["data"]["validation_data"]["sha256"] == sha256_hex(
        local.files["valid"].read_bytes()
    )
    s3 = local.client("s3")
    obj = s3.get_object(
        Bucket=local.res.model_bucket,
        Key="models/credit-risk/v1/model.onnx",
        VersionId=card["artifact"]["s3_version_id"],
    )
    assert sha256_hex(obj["Body"].read()) == card["artifact"]["sha256"]


def test_register_from_s3_data_pins_the_object_version(local: Local) -> None:
    s3 = local.client("s3")
    f = local.files
    vid = s3.put_object(
        Bucket=local.res.data_bucket, Key="training/train.csv", Body=f["train"].read_bytes()
    )["VersionId"]
    s3.put_object(
        Bucket=local.res.data_bucket, Key="training/valid.csv", Body=f["valid"].read_bytes()
    )
    card = ferry_json(
        "register",
        MODEL,
        "--pipeline",
        f["pipeline"],
        "--train",
        f"s3://{local.res.data_bucket}/training/train.csv",
        "--valid",
        f"s3://{local.res.data_bucket}/training/valid.csv",
        "--target",
        TARGET,
    )["card"]
    assert (
        card["lineage"]["training_data_uri"] == f"s3://{local.res.data_bucket}/training/train.csv"
    )
    assert card["lineage"]["training_data_version"] == vid


def test_register_onnx_with_schema_and_reference(local: Local) -> None:
    f = local.files
    f["onnx"].write_bytes(_onnx_bytes(local))
    out = ferry_json(
        "register",
        MODEL,
        "--onnx",
        f["onnx"],
        "--schema",
        f["schema"],
        "--valid",
        f["valid_ref"],
        "--train",
        f["train"],
        "--target",
        TARGET,
        "--reference-column",
        "source_score",
    )
    assert out["card"]["validation"]["passed"]
    assert out["card"]["lineage"]["training_data_sha256"] == sha256_hex(f["train"].read_bytes())
    bare = ferry_json("register", MODEL, "--onnx", f["onnx"], "--schema", f["schema"])
    assert bare["card"]["validation"] is None
    refused = ferry("promote", MODEL, str(bare["card"]["version"]), ok=False)
    assert refused.exit_code == 1
    assert "has no validation results" in refused.stderr and refused.stderr.count("\n") == 1


def _onnx_bytes(local: Local) -> bytes:
    """The ONNX file a user would hold: converted by an earlier registration (v1)."""
    _register_pipeline(local)
    obj = local.client("s3").get_object(
        Bucket=local.res.model_bucket, Key="models/credit-risk/v1/model.onnx"
    )
    return obj["Body"].read()


def test_parity_failure_is_refused_and_nothing_registered(local: Local) -> None:
    f = local.files
    result = ferry(
        "register",
        MODEL,
        "--pipeline",
        f["pipeline"],
        "--train",
        f["train"],
        "--valid",
        f["valid"],
        "--target",
        TARGET,
        "--parity-tolerance",
        "1e-12",
        ok=False,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("ferry register: ONNX-vs-sklearn parity failed: max abs diff")
    assert ferry_json("models")["models"] == []


def _governance(local: Local, tmp_path: Path) -> Any:
    from ferry_core.registry.governance import connect

    return connect(
        dynamodb=local.client("dynamodb"),
        s3=local.client("s3"),
        events=None,
        registry_table=local.res.registry_table,
        audit_table=local.res.audit_table,
        anchor_bucket=local.res.anchor_bucket,
        cache_dir=str(tmp_path / "gate"),
    )


def test_promote_rollback_show_and_audit(local: Local, tmp_path: Path, gate_pass: Any) -> None:
    """Given two versions, each gated before production, promote both, roll back, then the
    listing, the stage history and the audit trail tell the same story, and `audit verify`
    proves the chain."""
    _register_pipeline(local)
    _register_pipeline(local)
    gov = _governance(local, tmp_path)
    gate_pass(gov, MODEL, 1)
    assert ferry_json("promote", MODEL, "1", "--to", "production", "--reason", "first")[
        "after"
    ] == {"production": 1}
    ferry("promote", MODEL, "2", "--to", "staging")
    gate_pass(gov, MODEL, 2)
    ferry("promote", MODEL, "2", "--to", "production", "--expect", "1")
    rolled = ferry_json("rollback", MODEL, "--reason", "latency")
    assert (rolled["before"], rolled["after"]) == ({"production": 2}, {"production": 1})
    assert ferry_json("models")["models"] == [
        {"name": MODEL, "stages": {"production": 1, "staging": 2}, "latest_version": 2}
    ]
    shown = ferry_json("show", MODEL)
    assert [(h["version"], h["event"]) for h in shown["history"]["production"]] == [
        (1, "promote"),
        (2, "promote"),
        (1, "rollback"),
    ]
    assert ferry_json("show", MODEL, "--version", "2")["card"]["version"] == 2
    events = [e["event"] for e in ferry_json("audit", MODEL)]
    assert events == [
        "register",
        "register",
        "validate",
        "promote",
        "promote",
        "validate",
        "promote",
        "rollback",
    ]
    (report,) = ferry_json("audit", "verify", MODEL)
    assert report["ok"] and report["anchors"] == 8
    tables = ferry("show", MODEL).stdout
    assert "production history" in tables and "rollback" in tables


def test_archive_approve_reject_and_clear_failures(local: Local) -> None:
    _register_pipeline(local)
    _register_pipeline(local)
    assert ferry_json("approve", MODEL, "1", "--reason", "ok")["after"] == {"status": "approved"}
    assert ferry_json("reject", MODEL, "2", "--reason", "bias")["after"] == {"status": "rejected"}
    failures = {
        ("promote", MODEL, "2"): "is rejected",
        ("promote", MODEL, "9"): "has no version 9",
        ("promote", MODEL, "1", "--to", "live"): "--to must be production or staging",
        ("rollback", MODEL): "no earlier production version",
        ("archive", MODEL, "2"): "already rejected",
        ("show", "nope"): "no model named 'nope'",
        ("audit", "nope"): "no audit entries for 'nope'",
        (
            "register",
            MODEL,
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
    ferry("archive", MODEL, "1")
    assert ferry_json("show", MODEL)["versions"][0]["status"] == "archived"


def test_audit_verify_names_a_deleted_entry(local: Local, tmp_path: Path, gate_pass: Any) -> None:
    _register_pipeline(local)
    gate_pass(_governance(local, tmp_path), MODEL, 1)
    ferry("promote", MODEL, "1")
    local.client("dynamodb").delete_item(
        TableName=local.res.audit_table, Key={"model": {"S": MODEL}, "seq": {"N": "1"}}
    )
    result = ferry("audit", "verify", ok=False)
    assert result.exit_code == 1
    assert (
        result.stderr
        == "ferry audit verify: entry 1 of credit-risk is missing (next present is 2)\n"
    )


def test_local_env_without_a_running_platform(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(tmp_path / "absent.json"))
    result = ferry("models", ok=False)
    assert result.exit_code == 1 and "start it with `ferry local up`" in result.stderr


def test_deployed_env_resolves_outputs_from_cloudformation(
    aws, boto, built, governed, gate_pass
) -> None:
    """Given a stack Ferry-dev whose outputs name the tables and buckets, `--env dev` finds them
    through describe_stacks and runs the same commands."""
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter

    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": getattr(aws, attr)} for key, attr in OUTPUTS.items()},
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="Ferry-dev", TemplateBody=json.dumps(template)
    )
    writer = RegistryWriter(boto["dynamodb"], aws.registry_table)
    register_built(built, MODEL, boto["s3"], aws.model_bucket, writer, Lineage())
    gate_pass(governed(), MODEL, 1)
    out = ferry_json("promote", MODEL, "1", "--env", "dev")
    assert out["after"] == {"production": 1}
    assert ferry_json("models", "--env", "dev")["models"][0]["stages"]["production"] == 1
    validated, entry = ferry_json("audit", MODEL, "--env", "dev")
    assert (validated["event"], entry["event"]) == ("validate", "promote")
    assert entry["actor"].startswith("arn:aws:sts::") or entry["actor"].startswith("arn:aws:iam")
    missing = ferry("models", "--env", "prod", ok=False)
    assert "cannot read stack Ferry-prod" in missing.stderr


def test_register_takes_real_column_names_and_declared_types(
    local: Local, tmp_path: Path, named_frames: Any
) -> None:
    """Given a pipeline fitted on columns such as `mean radius` and `a,b`, `ferry register`
    registers it; `--feature-type` declares a type the data alone would not give."""
    pipe, train, valid = named_frames
    joblib.dump(pipe, tmp_path / "named.joblib")
    train.to_csv(tmp_path / "named-train.csv", index=False)
    valid.to_csv(tmp_path / "named-valid.csv", index=False)
    args = ["register", "breast-cancer", "--pipeline", tmp_path / "named.joblib"]
    args += ["--train", tmp_path / "named-train.csv", "--valid", tmp_path / "named-valid.csv"]
    card = ferry_json(*args, "--feature-type", "mean radius=number")["card"]
    features = {f["name"]: f for f in card["input_schema"]["features"]}
    assert features["mean radius"]["type"] == "number"
    assert features["a,b"]["onnx_input"] == "a_b" and card["validation"]["passed"]
    refused = ferry(*args, "--feature-type", "mean perimeter=integer", ok=False)
    assert refused.exit_code == 1
    assert "declared integer but has fractional values" in refused.stderr
    bad_spec = ferry(*args, "--feature-type", "mean radius=float", ok=False)
    words = " ".join(bad_spec.output.replace("│", " ").split())  # Rich wraps the message
    assert bad_spec.exit_code != 0 and "expected NAME=TYPE, TYPE one of number" in words


def test_a_schema_with_a_bad_feature_name_is_refused_in_plain_words(
    local: Local, tmp_path: Path
) -> None:
    schema = json.loads(CREDIT_RISK_SCHEMA.model_dump_json())
    schema["features"][0]["name"] = "age\tyears"
    (tmp_path / "bad.json").write_text(json.dumps(schema))
    result = ferry(
        "register",
        MODEL,
        "--onnx",
        local.files["pipeline"],
        "--schema",
        tmp_path / "bad.json",
        ok=False,
    )
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "'age\\tyears' contains the control character U+0009" in result.stderr
    assert "pydantic" not in result.stderr and "http" not in result.stderr


def test_register_overrides_the_inferred_schema_from_flags_and_a_file(
    local: Local, tmp_path: Path, named_frames: Any
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
    args = ["register", "breast-cancer", "--pipeline", tmp_path / "named.joblib"]
    args += ["--train", tmp_path / "named-train.csv", "--valid", tmp_path / "named-valid.csv"]
    card = ferry_json(
        *args,
        "--feature",
        "mean radius=number,min=0,max=100,out_of_range=reject",
        "--schema-overrides",
        tmp_path / "overrides.json",
    )["card"]
    features = {f["name"]: f for f in card["input_schema"]["features"]}
    radius = features["mean radius"]
    assert (radius["minimum"], radius["maximum"], radius["out_of_range"]) == (0, 100, "reject")
    assert features["a,b"]["categories"] == ["large", "medium", "small"]
    unicode_col = features["Ünïcode col"]
    assert unicode_col["maximum"] is None and unicode_col["nullable"] is True
    assert unicode_col["minimum"] == float(train["Ünïcode col"].min())
    unknown = ferry(*args, "--feature", "mean radus=number", ok=False)
    assert unknown.exit_code == 1 and unknown.stderr.count("\n") == 1
    assert "'mean radus' (close matches: 'mean radius'" in unknown.stderr
    malformed = ferry(*args, "--feature", "mean radius=number,min=abc", ok=False)
    words = " ".join(malformed.output.replace("│", " ").split())  # Rich wraps the message
    assert malformed.exit_code == 2 and "min must be a finite number, not 'abc'" in words
