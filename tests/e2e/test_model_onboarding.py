"""A model registered on the running platform, with no synth in between, is fully monitored.

The platform runs the template synthesized before this model existed. Registering it (`ferry
register`, as the data scientist) is enough: the governance function puts its five alarms,
the drift function covers it, and drifted traffic drives its drift alarm to ALARM, which the
stack's one drift rule turns into a retraining run for this model. The run may fail later
(no trainer for these features exists); that it starts, for this model, is what is asserted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError

from ferry_local.alarms import wait_for_alarm_state, wait_for_model_alarms

RunningPlatform = Any  # tests/e2e/conftest.py: the `ferry local up` child process
MODEL = "tiny-churn"
FEATURES = ("tenure_months", "monthly_spend", "support_calls")
KINDS = ("latency-p99", "errors-4xx", "errors-5xx", "drift", "batch-failures")


def _frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Churn data on features credit-risk does not have; `shift` moves spend and calls up."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.uniform(1, 72, rows).round(1),
            "monthly_spend": rng.normal(60 + 40 * shift, 15, rows).round(2),
            "support_calls": rng.poisson(2 + 4 * shift, rows).astype(float),
        }
    )
    logit = -0.04 * frame.tenure_months + 0.03 * frame.monthly_spend + 0.5 * frame.support_calls - 2
    frame["target"] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fitted scikit-learn pipeline (joblib) and its train/valid CSVs, as a user has them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    where = tmp_path_factory.mktemp("tiny-churn")
    train, valid = _frame(2000, seed=1), _frame(600, seed=2)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    pipe.fit(train[list(FEATURES)], train["target"])
    paths = {"pipeline": where / "churn.joblib", "train": where / "t.csv", "valid": where / "v.csv"}
    joblib.dump(pipe, paths["pipeline"])
    train.to_csv(paths["train"], index=False)
    valid.to_csv(paths["valid"], index=False)
    return paths


def _ferry(run_ferry: Any, platform: RunningPlatform, identity: str, *args: str) -> Any:
    result = run_ferry(platform, "--as", identity, *args, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _dims(metric: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in metric["Dimensions"]}


def _put_request(alarm: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The PutMetricAlarm arguments that would redefine `alarm` (as described) with changes."""
    keys = ("AlarmName", "Namespace", "MetricName", "Dimensions", "Statistic", "Period")
    keys += ("EvaluationPeriods", "Threshold", "ComparisonOperator")
    return {k: alarm[k] for k in keys} | {k[0].upper() + k[1:]: v for k, v in changes.items()}


def _send_drifted_traffic(platform: RunningPlatform, rows: int = 1500) -> None:
    shifted = _frame(rows, seed=7, shift=1.0)[list(FEATURES)].to_dict("records")
    for start in range(0, rows, 500):
        status, _, body = platform.request(
            "POST", f"/v1/models/{MODEL}/predict", {"instances": shifted[start : start + 500]}
        )
        assert status == 200, body
    s3 = platform.client("s3", "data-scientist")
    bucket, deadline = platform.outputs["DataBucketName"], time.monotonic() + 60
    while time.monotonic() < deadline:  # the capture buffer flushes every 500 rows
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"capture/rows/{MODEL}/")
        if listed.get("KeyCount", 0) >= rows // 500:
            return
        time.sleep(0.5)
    pytest.fail("the captured rows never reached the data bucket")


def _retrain_runs(platform: RunningPlatform, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The retraining executions started for this model by a drift alarm."""
    sfn = platform.client("stepfunctions")
    machine, deadline = platform.outputs["RetrainStateMachineArn"], time.monotonic() + timeout
    while True:
        runs = []
        for summary in sfn.list_executions(stateMachineArn=machine)["executions"]:
            run = sfn.describe_execution(executionArn=summary["executionArn"])
            run_input = json.loads(run["input"])
            if run_input.get("model") == MODEL and run_input.get("trigger") == "drift":
                runs.append(run_input)
        if runs or time.monotonic() > deadline:
            return runs
        time.sleep(1)


def test_a_model_registered_without_a_synth_is_monitored_and_retrained_on_drift(
    local_platform: RunningPlatform, run_ferry: Any, files: dict[str, Path]
) -> None:
    """
    Given the running platform, synthesized before `tiny-churn` existed
    When the data scientist registers tiny-churn (other features than credit-risk), the
        approver has it gated and the admin promotes it
    Then its five alarms exist, watching its own metrics with the config's thresholds and
        notifying the alarm topic; and when drifted traffic is scored and the drift check
        runs, its drift alarm goes to ALARM and a retraining run starts for tiny-churn
    """
    registered = _ferry(
        run_ferry,
        local_platform,
        "data-scientist",
        "register",
        MODEL,
        *("--pipeline", str(files["pipeline"])),
        *("--train", str(files["train"]), "--valid", str(files["valid"])),
    )
    version = registered["card"]["version"]
    assert registered["outcome"]["event"] == "register"
    # Production takes it once the gate its registration started has passed.
    gated = _ferry(run_ferry, local_platform, "approver", "validate", MODEL, str(version))
    assert gated["passed"] is True, gated
    _ferry(run_ferry, local_platform, "admin", "promote", MODEL, str(version))

    cloudwatch = local_platform.client("cloudwatch", "data-scientist")
    alarms = wait_for_model_alarms(cloudwatch, f"Ferry-local-model-{MODEL}-", len(KINDS))
    assert sorted(alarms) == sorted(KINDS)
    topic = local_platform.outputs["AlarmTopicArn"]
    assert all(a["AlarmActions"] == [topic] for a in alarms.values())
    latency, drift = alarms["latency-p99"], alarms["drift"]
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("Latency", "p99")
    assert _dims(latency) == {"model": MODEL, "service": "ferry-scoring"}
    assert (drift["Namespace"], drift["MetricName"]) == ("Ferry", "DriftMaxPSI")
    assert _dims(drift) == {"model": MODEL, "service": "ferry-drift"}
    assert drift["Threshold"] == 0.2  # the dev config's drift_psi_alarm (local runs dev's)
    rates = {m["Id"]: m for m in alarms["errors-5xx"]["Metrics"]}
    assert _dims(rates["e5"]["MetricStat"]["Metric"]) == {
        "model": MODEL,
        "service": "ferry-scoring",
    }
    assert _dims(alarms["batch-failures"])["model"] == MODEL

    with pytest.raises(ClientError, match="AccessDenied"):  # only governance puts them
        cloudwatch.put_metric_alarm(**_put_request(alarms["drift"], threshold=99.0))

    _send_drifted_traffic(local_platform)
    resp = local_platform.client("lambda").invoke(  # the admin runs the check, not the schedule
        FunctionName=local_platform.outputs["DriftFunctionName"],
        Payload=json.dumps({"models": [MODEL]}),
    )
    assert "FunctionError" not in resp, resp["Payload"].read()[:500]
    wait_for_alarm_state(cloudwatch, f"Ferry-local-model-{MODEL}-drift", "ALARM", timeout=120)

    (run,) = _retrain_runs(local_platform)
    assert run["model"] == MODEL and "Threshold Crossed" in run["reason"]
