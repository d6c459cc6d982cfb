"""The drift function under moto: reads what the scoring function captured, writes the report
beside it and publishes EMF metrics (the drift alarm's DriftMaxPSI among them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from ferry_core.monitoring.capture import ROWS_PREFIX, read_report
from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records
from ferry_local.events import LambdaContext, http_api_event
from ferry_local.handlers import load_handler

PREDICT = "/v1/models/credit-risk/predict"
LATEST = "capture/reports/credit-risk/latest.json"


@pytest.fixture
def scoring(registered: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The real scoring handler with every request captured, flushing every 200 rows."""
    monkeypatch.setenv("CAPTURE_SAMPLE_RATE", "1.0")
    monkeypatch.setenv("CAPTURE_MAX_RECORDS", "200")
    module = load_handler("scoring")
    module.service.cache_clear()
    module.capture.cache_clear()
    yield module
    module.capture().close()
    module.service.cache_clear()
    module.capture.cache_clear()


@pytest.fixture
def drift(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ferry-drift")
    monkeypatch.setenv("DRIFT_MIN_SAMPLES", "300")
    module = load_handler("drift")
    module.runtime.cache_clear()
    yield module
    module.runtime.cache_clear()


def score(scoring: ModuleType, rows: list[dict[str, Any]], per_request: int = 50) -> None:
    for i in range(0, len(rows), per_request):
        body = json.dumps({"instances": rows[i : i + per_request]})
        event = http_api_event("POST", PREDICT, body, routes=scoring.ROUTES)
        assert scoring.lambda_handler(event, LambdaContext())["statusCode"] == 200
    scoring.capture().flush()


def emf(out: str) -> dict[tuple[str, str | None], float]:
    """(metric, feature) → value, from the EMF lines the function printed."""
    got: dict[tuple[str, str | None], float] = {}
    for line in out.splitlines():
        if '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for m in directive["Metrics"]:
                value = doc[m["Name"]]
                got[(m["Name"], doc.get("feature"))] = (
                    value[0] if isinstance(value, list) else value
                )
    return got


def test_drifted_traffic_is_reported_and_published(
    scoring, drift, aws, boto, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Given 600 requests-worth of rows with shifted incomes scored through the real handler
    When the scheduled drift function runs
    Then it reads the capture objects, writes the report (and latest.json) under
        capture/reports/, and publishes DriftMaxPSI over the alarm threshold, per-feature PSI
        and KS, and DriftRows
    """
    score(scoring, records(generate_credit_data(600, seed=41, shift=1.0), CREDIT_RISK_SCHEMA))
    listed = boto["s3"].list_objects_v2(Bucket=aws.data_bucket, Prefix=ROWS_PREFIX)
    assert len(listed["Contents"]) == 3  # 600 rows, flushed every 200
    capsys.readouterr()

    result = drift.lambda_handler({"source": "aws.events"}, LambdaContext())

    (summary,) = result["reports"]
    assert (summary["model"], summary["verdict"], summary["rows"]) == ("credit-risk", "alarm", 600)
    report = read_report(boto["s3"], aws.data_bucket, "credit-risk")
    assert report["key"] == summary["report"] and report["verdict"] == "alarm"
    assert boto["s3"].get_object(Bucket=aws.data_bucket, Key=report["key"])  # the history copy
    assert report["features"][0]["feature"] in ("annual_income", "debt_to_income")
    metrics = emf(capsys.readouterr().out)
    assert metrics[("DriftMaxPSI", None)] == pytest.approx(report["max_psi"])
    assert metrics[("DriftMaxPSI", None)] >= 0.2
    assert metrics[("DriftRows", None)] == 600
    assert metrics[("DriftPSI", "annual_income")] >= 0.2
    assert ("DriftKS", "score") in metrics
    assert metrics[("DriftFailures", None)] == 0


def test_stable_traffic_is_ok(scoring, drift, aws, boto) -> None:
    score(scoring, records(generate_credit_data(600, seed=42), CREDIT_RISK_SCHEMA))
    (summary,) = drift.lambda_handler({}, LambdaContext())["reports"]
    assert summary["verdict"] == "ok" and summary["max_psi"] < 0.1


def test_a_quiet_window_gives_no_verdict_and_no_drift_metric(
    scoring, drift, aws, boto, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Given fewer captured rows than DRIFT_MIN_SAMPLES (here 100 < 300), heavily shifted
    Then the report says insufficient_data and only DriftRows is published
    """
    score(scoring, records(generate_credit_data(100, seed=43, shift=2.0), CREDIT_RISK_SCHEMA))
    capsys.readouterr()
    (summary,) = drift.lambda_handler({}, LambdaContext())["reports"]
    assert summary["verdict"] == "insufficient_data"
    metrics = emf(capsys.readouterr().out)
    assert ("DriftMaxPSI", None) not in metrics and metrics[("DriftRows", None)] == 100
    assert read_report(boto["s3"], aws.data_bucket, "credit-risk")["features"] == []


def test_a_failing_model_is_counted_and_the_others_still_run(
    registered, drift, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Given an invocation naming an unknown model and the live one (nothing captured)
    Then the unknown one is reported failed and counted in DriftFailures; the other runs
    """
    result = drift.lambda_handler({"models": ["nope", "credit-risk"]}, LambdaContext())
    verdicts = {r["model"]: r["verdict"] for r in result["reports"]}
    assert verdicts == {"nope": "failed", "credit-risk": "insufficient_data"}
    assert emf(capsys.readouterr().out)[("DriftFailures", None)] == 1
