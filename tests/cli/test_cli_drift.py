"""`ferry drift` against a local platform (a moto server described by `.ferry/local.json`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

from ferry_cli.main import app
from ferry_core.card import Lineage
from ferry_core.monitoring.capture import CaptureBuffer
from ferry_core.onboarding.builder import (
    CREDIT_RISK_SCHEMA,
    generate_credit_data,
    records,
    to_model_frame,
)
from ferry_core.registry.registration import register_built
from ferry_core.registry.writer import RegistryWriter
from ferry_local.moto_stack import create_identities, create_resources

MODEL = "credit-risk"


@pytest.fixture
def platform(tmp_path, monkeypatch, built, fitted) -> Iterator[dict[str, Any]]:
    """A moto server with Ferry's resources, credit-risk v1 in production, local.json."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    requests.post(f"{url}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    res = create_resources()
    clients = {s: boto3.client(s, region_name="us-east-1") for s in ("s3", "dynamodb")}
    writer = RegistryWriter(clients["dynamodb"], res.registry_table)
    card = register_built(built, MODEL, clients["s3"], res.model_bucket, writer, Lineage())
    writer.set_stage(MODEL, "production", card.version, None, actor="tests")
    identities = {name: i.to_json() for name, i in create_identities().items()}
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = {
        "api_url": url,
        "aws_endpoint_url": url,
        "region": "us-east-1",
        "stack": "Ferry-local",
        "outputs": {"DataBucketName": res.data_bucket, "RegistryTableName": res.registry_table},
    }
    config["identities"] = identities
    (tmp_path / "local.json").write_text(json.dumps(config))
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(tmp_path / "local.json"))
    monkeypatch.setenv("COLUMNS", "160")  # Rich wraps at 80 columns without a terminal
    yield {"url": url, "res": res, "pipe": fitted[0], "s3": clients["s3"]}
    requests.post(f"{url}/moto-api/reset", timeout=10)
    server.stop()


def capture_traffic(platform: dict[str, Any], shift: float, rows: int = 800) -> None:
    df = generate_credit_data(rows, seed=61, shift=shift)
    scores = platform["pipe"].predict_proba(to_model_frame(df, CREDIT_RISK_SCHEMA))[:, 1]
    preds = [{"score": s, "label": int(s >= 0.5)} for s in scores.tolist()]
    buf = CaptureBuffer(platform["s3"], platform["res"].data_bucket, sample_rate=1.0)
    buf.offer(MODEL, 1, "req-1", records(df, CREDIT_RISK_SCHEMA), preds)
    buf.close()


def ferry(*args: Any, ok: bool = True) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_no_report_yet_is_a_one_line_failure(platform) -> None:
    result = ferry("drift", MODEL, ok=False)
    assert result.exit_code == 1
    assert "no drift report for 'credit-risk' yet" in result.output


def test_run_then_show_the_latest_report_as_table_json_and_png(platform, tmp_path: Path) -> None:
    """
    Given drifted traffic captured for credit-risk
    When I run `ferry drift credit-risk --run`, then `ferry drift credit-risk` (--json, --plot)
    Then the table shows the alarm led by the shifted features, the JSON is the stored report
        and the PNG is written
    """
    capture_traffic(platform, shift=1.0)
    ran = ferry("drift", MODEL, "--run")
    assert "verdict alarm" in ran.stdout and "annual_income" in ran.stdout
    shown = ferry("drift", MODEL)
    assert "PSI" in shown.stdout and "debt_to_income" in shown.stdout
    report = json.loads(ferry("drift", MODEL, "--json").stdout)
    assert report["verdict"] == "alarm" and report["rows"] == 800
    assert report["features"][0]["feature"] in ("annual_income", "debt_to_income")
    png = tmp_path / "drift.png"
    out = ferry("drift", MODEL, "--plot", "--out", png, "--top", 4)
    assert f"wrote {png}" in out.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_a_quiet_window_says_why_there_is_no_verdict(platform) -> None:
    capture_traffic(platform, shift=0.0, rows=50)
    out = ferry("drift", MODEL, "--run")
    assert "insufficient_data" in out.stdout and "fewer than" in out.stdout
    failed = ferry("drift", MODEL, "--plot", ok=False)
    assert failed.exit_code == 1 and "insufficient data" in failed.output
