"""`ferry alarms --env local` against the running local platform: the stack's alarms as the
template defines them and every registered model's alarms as the governance function put them,
a real alarm driven to ALARM by a failed batch file, the filters."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from ferry_cli.alarm_list import STATES
from ferry_cli.main import app
from ferry_local.template import Resolver, load_template

MODEL = "credit-risk"
MODEL_ALARMS = "Ferry-local-model-"  # every model's alarms: Ferry-{env}-model-{model}-{kind}
ALARM_TYPES = ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
ENTRY_KEYS = {
    "name",
    "state",
    "state_reason",
    "transitioned_at",
    "description",
    "metrics",
    "expression",
    "statistic",
    "period",
    "threshold",
    "comparison",
    "evaluation_periods",
    "datapoints_to_alarm",
    "models",
}


@pytest.fixture(autouse=True)
def _its_local_json(local_platform: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(local_platform.state_dir / "local.json"))
    monkeypatch.setenv("COLUMNS", "200")  # Rich wraps at 80 columns without a terminal


@pytest.fixture(scope="module")
def template_alarms(local_platform: Any) -> dict[str, dict[str, Any]]:
    """Every alarm of the synthesized template (the one the platform runs), by physical name."""
    template = load_template()
    resolver = Resolver(
        template, stack_name=local_platform.info["stack"], region=local_platform.info["region"]
    )
    return {
        resolver.physical_id(lid): r.get("Properties", {})
        for lid, r in template["Resources"].items()
        if r["Type"] in ALARM_TYPES
    }


@pytest.fixture(scope="module")
def model_alarms(local_platform: Any, serve_model: Any, built: Any) -> dict[str, dict[str, Any]]:
    """credit-risk served (registered as `ferry register` does); every model alarm, by name,
    once credit-risk's five exist (the governance function puts them on the registry event)."""
    serve_model(local_platform, built, MODEL)
    cloudwatch = local_platform.client("cloudwatch")
    deadline = time.monotonic() + 90
    while True:
        pages = cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=MODEL_ALARMS)
        found = {a["AlarmName"]: a for page in pages for a in page["MetricAlarms"]}
        if sum(n.startswith(f"{MODEL_ALARMS}{MODEL}-") for n in found) == 5:
            return found
        assert time.monotonic() < deadline, f"{MODEL}'s alarms were never put: {sorted(found)}"
        time.sleep(0.5)


def watches_model(props: dict[str, Any], model: str) -> bool:
    dimensions = list(props.get("Dimensions") or [])
    for query in props.get("Metrics") or []:
        dimensions += (query.get("MetricStat") or {}).get("Metric", {}).get("Dimensions") or []
    return {"Name": "model", "Value": model} in dimensions


def alarms(*args: str) -> Any:
    result = CliRunner().invoke(app, ["alarms", "--env", "local", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def listed(*args: str) -> list[dict[str, Any]]:
    return json.loads(alarms("--json", *args).stdout)


def test_lists_the_templates_and_the_models_alarms_alarm_first(
    template_alarms: dict[str, dict[str, Any]], model_alarms: dict[str, dict[str, Any]]
) -> None:
    """
    Given the local platform running the synthesized stack, credit-risk registered
    When `ferry alarms --json` runs as admin
    Then it lists every alarm of the template and every model's alarms and nothing else, in
        state order, each with what it watches, how, its threshold and comparison, state,
        reason and transition time
    """
    entries = listed()
    names = {e["name"] for e in entries}
    assert set(template_alarms) <= names and set(model_alarms) <= names
    assert all(n.startswith(MODEL_ALARMS) for n in names - set(template_alarms))
    assert all(set(e) == ENTRY_KEYS for e in entries)
    ranks = [STATES.index(e["state"]) for e in entries]
    assert ranks == sorted(ranks)
    known = {**template_alarms, **model_alarms}
    for e in entries:
        if e["name"] not in known:  # a model registered since the fixture listed them
            continue
        props = known[e["name"]]
        assert e["state_reason"] and e["transitioned_at"]
        if watches_model(props, MODEL):
            assert e["models"] == [MODEL]
        else:  # a template alarm, or another model's (tests on this platform register more)
            assert MODEL not in e["models"] and len(e["models"]) <= 1
        if "AlarmRule" in props:  # a composite alarm watches other alarms
            assert e["expression"] == props["AlarmRule"]
            continue
        assert e["threshold"] == float(props["Threshold"])
        assert e["comparison"] == props["ComparisonOperator"]
        assert e["period"] and (e["metrics"] or e["expression"])
    by_name = {e["name"]: e for e in entries}
    latency = by_name[f"{MODEL_ALARMS}{MODEL}-latency-p99"]
    assert latency["statistic"] == "p99" and latency["expression"] is None
    (metric,) = latency["metrics"]
    assert metric["namespace"] == "Ferry" and metric["metric"] == "Latency"
    assert metric["dimensions"]["model"] == MODEL
    rate = by_name[f"{MODEL_ALARMS}{MODEL}-errors-4xx"]
    assert "FILL(e4, 0)" in rate["expression"] and rate["statistic"] is None
    assert {m["id"] for m in rate["metrics"]} == {"ok", "e4", "e5"}


def test_a_firing_alarm_comes_first_with_its_reason_and_filters_select(
    local_platform: Any, model_alarms: dict[str, dict[str, Any]]
) -> None:
    """
    Given a batch file for a version of credit-risk that does not exist (a failed manifest)
    When the platform's evaluator puts the model's batch-failures alarm in ALARM
    Then `ferry alarms` lists it first with its reason and transition time, in the table too,
        and `--state` and `--model` select exactly the matching alarms
    """
    name = f"{MODEL_ALARMS}{MODEL}-batch-failures"
    started = datetime.now(UTC) - timedelta(seconds=5)
    local_platform.client("s3", "data-scientist").put_object(
        Bucket=local_platform.outputs["DataBucketName"],
        Key=f"batch/incoming/{MODEL}@999/alarm-{uuid.uuid4().hex[:8]}.csv",
        Body=b"age\n30\n",
    )
    cloudwatch = local_platform.client("cloudwatch")
    deadline = time.monotonic() + 120
    while cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] != "ALARM":
        assert time.monotonic() < deadline, f"{name} never went to ALARM"
        time.sleep(1)

    entries = listed()
    firing = [e for e in entries if e["state"] == "ALARM"]
    assert entries[: len(firing)] == firing and name in [e["name"] for e in firing]
    entry = next(e for e in firing if e["name"] == name)
    assert entry["state_reason"].startswith("Threshold Crossed")
    assert datetime.fromisoformat(entry["transitioned_at"]) >= started.replace(microsecond=0)
    assert entry["models"] == [MODEL]

    table = alarms().stdout
    rows = re.findall(r"^│ (ALARM|OK|INSUFFICIENT_DATA) +│ (\S+)", table, re.MULTILINE)
    stack = local_platform.info["stack"]
    assert rows == [(e["state"], e["name"].removeprefix(f"{stack}-")) for e in entries]
    assert "Threshold Crossed" in table and f"{len(firing)} in ALARM" in table

    only_firing = listed("--state", "alarm")
    assert name in [e["name"] for e in only_firing]
    assert {e["state"] for e in only_firing} == {"ALARM"}
    for_model = listed("--model", MODEL)
    assert sorted(e["name"] for e in for_model) == sorted(
        n for n, props in model_alarms.items() if watches_model(props, MODEL)
    )
    assert len(for_model) == 5
    assert listed("--model", "no-such-model") == []


def test_a_persona_without_monitoring_read_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command reads with the caller's identity: `client` may only call the API."""
    monkeypatch.setenv("FERRY_IDENTITY", "client")
    result = CliRunner().invoke(app, ["alarms", "--env", "local"])
    assert result.exit_code == 1
    assert result.output.startswith("ferry alarms: AWS call failed:")
    assert "cloudwatch:DescribeAlarms" in result.output and result.output.count("\n") == 1
