"""The canary steps of the retrain-and-promote workflow (ferry_core/retrain/workflow.py).

Real registry and audit tables, real buckets and real CloudWatch metrics under moto.
"""

from __future__ import annotations

import pytest

from ferry_core.errors import PromotionRefused
from ferry_core.registry.governance import Governance
from ferry_core.retrain.workflow import Workflow
from tests.unit.retrain.workflow_support import (
    MODEL,
    audit,
    put_canary_metrics,
    registered_candidate,
    step,
)


def test_start_canary_refuses_without_a_champion_or_a_percent(
    wf: Workflow, gov: Governance, built, aws, boto
) -> None:
    version = registered_candidate(wf, aws, boto, built, "run-1")
    with pytest.raises(PromotionRefused, match="no production version"):
        step(wf, "start_canary", "run-1", version=version, percent=10)
    with pytest.raises(PromotionRefused, match="needs a percent"):
        step(wf, "start_canary", "run-1", version=version)
    assert gov.reader.fresh_canary(MODEL) is None


def test_start_canary_refuses_a_version_that_cannot_go_live(
    wf: Workflow, gov: Governance, registered, built, aws, boto
) -> None:
    """A rejected candidate, and production itself, cannot be a canary."""
    version = registered_candidate(wf, aws, boto, built, "run-1")
    with pytest.raises(PromotionRefused, match="already production"):
        step(wf, "start_canary", "run-1", version=1, percent=10)
    gov.reject(MODEL, version, actor="carol", reason="no")
    with pytest.raises(PromotionRefused, match="rejected"):
        step(wf, "start_canary", "run-1", version=version, percent=10)
    assert gov.reader.fresh_canary(MODEL) is None


@pytest.fixture
def canary(wf: Workflow, gov: Governance, registered, built, aws, boto) -> int:
    """credit-risk v1 in production, run-1's v2 staged and in a 10 % canary."""
    version = registered_candidate(wf, aws, boto, built, "run-1")
    out = step(wf, "start_canary", "run-1", version=version, percent=10)
    assert out["event"] == "canary_start"
    return version


def test_a_healthy_canary_passes(wf: Workflow, canary: int, cloudwatch) -> None:
    put_canary_metrics(cloudwatch, "canary", 40, 0, 10.0)
    put_canary_metrics(cloudwatch, "champion", 400, 1, 9.0)
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is True, out["reasons"]
    assert out["summary"].startswith("canary healthy")
    assert (out["figures"]["canary_requests"], out["figures"]["champion_requests"]) == (40, 400)
    assert out["figures"]["champion_5xx"] == 1


def test_a_canary_with_an_error_spike_is_unhealthy(wf: Workflow, canary: int, cloudwatch) -> None:
    put_canary_metrics(cloudwatch, "canary", 40, 10, 10.0)
    put_canary_metrics(cloudwatch, "champion", 400, 2, 9.0)
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is False
    (reason,) = out["reasons"]
    assert "canary 5xx rate 25.00% vs production 0.50%" in reason
    assert out["summary"].startswith("canary unhealthy")


def test_a_canary_with_too_few_requests_is_unhealthy(wf: Workflow, canary: int, cloudwatch) -> None:
    """Too little traffic is no evidence of health: the verdict fails closed."""
    put_canary_metrics(cloudwatch, "canary", 5, 0, 10.0)
    put_canary_metrics(cloudwatch, "champion", 50, 0, 9.0)
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is False
    assert out["reasons"] == ["only 5 canary request(s), fewer than the 20 needed to judge it"]


def test_a_canary_during_an_alarm_on_the_model_is_unhealthy(
    wf: Workflow, canary: int, cloudwatch
) -> None:
    """
    Given healthy canary figures, an alarm on another model in ALARM, and credit-risk's
        latency alarm
    When credit-risk's alarm goes to ALARM
    Then the verdict is unhealthy and names that alarm (and only that one)
    """
    put_canary_metrics(cloudwatch, "canary", 40, 0, 10.0)
    put_canary_metrics(cloudwatch, "champion", 400, 0, 9.0)
    for model in (MODEL, "fraud"):
        cloudwatch.put_metric_alarm(
            AlarmName=f"{model}-p99-latency",
            Namespace="Ferry",
            MetricName="Latency",
            Dimensions=[{"Name": "model", "Value": model}],
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=100,
            ComparisonOperator="GreaterThanThreshold",
        )
    cloudwatch.set_alarm_state(AlarmName="fraud-p99-latency", StateValue="ALARM", StateReason="t")
    assert step(wf, "evaluate_canary", "run-1", version=canary)["healthy"] is True

    cloudwatch.set_alarm_state(
        AlarmName=f"{MODEL}-p99-latency", StateValue="ALARM", StateReason="p99 over 100 ms"
    )
    out = step(wf, "evaluate_canary", "run-1", version=canary)
    assert out["healthy"] is False
    assert out["reasons"] == [f"alarm(s) in ALARM during the canary: {MODEL}-p99-latency"]


def test_evaluate_canary_needs_that_versions_canary_and_cloudwatch(
    wf: Workflow, gov: Governance, canary: int, aws, boto
) -> None:
    with pytest.raises(PromotionRefused, match="no canary in progress"):
        step(wf, "evaluate_canary", "run-1", version=1)
    blind = Workflow(
        gov,
        dynamodb=boto["dynamodb"],
        s3=boto["s3"],
        cloudwatch=None,
        registry_table=aws.registry_table,
        model_bucket=aws.model_bucket,
    )
    with pytest.raises(PromotionRefused, match="no CloudWatch client"):
        step(blind, "evaluate_canary", "run-1", version=canary)


def test_promote_candidate_moves_production_and_stops_the_canary(
    wf: Workflow, gov: Governance, canary: int
) -> None:
    """
    Given v2 in a 10 % canary beside production v1 (started and audited)
    When the workflow promotes v2
    Then production is v2, the canary is over, and the audit trail says it ended promoted
    """
    live = gov.reader.fresh_canary(MODEL)
    assert (live.version, live.percent, live.run_id) == (canary, 10.0, "run-1")
    start = gov.audit.entries(MODEL)[-1]
    assert (start.event, start.version) == ("canary_start", canary)
    assert start.after == {"production": 1, "canary": canary, "percent": 10.0}
    assert gov.reader.fresh_pointer(MODEL, "production").version == 1

    out = step(wf, "promote_candidate", "run-1", version=canary, details={"verdict": "healthy"})
    assert out["promoted"]["after"] == {"production": canary}
    assert gov.reader.fresh_pointer(MODEL, "production").version == canary
    assert gov.reader.fresh_canary(MODEL) is None
    assert audit(gov)[-2:] == [("promote", canary), ("canary_stop", canary)]
    stop = gov.audit.entries(MODEL)[-1]
    assert stop.after == {"canary": None, "outcome": "promoted"}
    assert stop.details["outcome"] == "promoted"
    assert stop.details["run_id"] == "run-1" and stop.details["verdict"] == "healthy"
    assert out["canary"]["event"] == "canary_stop"


def test_promote_candidate_without_a_canary_is_a_switch(
    wf: Workflow, gov: Governance, registered, built, aws, boto
) -> None:
    version = registered_candidate(wf, aws, boto, built, "run-1")
    out = step(wf, "promote_candidate", "run-1", version=version)
    assert "canary" not in out
    assert gov.reader.fresh_pointer(MODEL, "production").version == version


def test_rollback_canary_stops_it_and_rejects_the_version(
    wf: Workflow, gov: Governance, canary: int
) -> None:
    """
    Given v2 in a canary beside production v1
    When the verdict rolls it back
    Then the canary is over, v2 is rejected and unstaged, production stays v1, and the audit
        trail records the stop (rolled back) and the rejection with the reason
    """
    out = step(wf, "rollback_canary", "run-1", version=canary, reason="5xx spike")
    assert gov.reader.fresh_canary(MODEL) is None
    assert gov.reader.version_record(MODEL, canary)["status"] == "rejected"
    assert gov.reader.fresh_pointer(MODEL, "production").version == 1
    assert gov.reader.fresh_pointer(MODEL, "staging") is None
    stop, reject = gov.audit.entries(MODEL)[-2:]
    assert (stop.event, stop.details["outcome"]) == ("canary_stop", "rolled_back")
    assert (reject.event, reject.version) == ("reject", canary)
    assert reject.reason == "canary rolled back: 5xx spike"
    assert out["rejected"]["after"]["status"] == "rejected"
    with pytest.raises(PromotionRefused):
        step(wf, "promote_candidate", "run-1", version=canary)


def test_reject_run_ends_a_running_canary(wf: Workflow, gov: Governance, canary: int) -> None:
    out = step(wf, "reject_run", "run-1", version=canary, reason="approval timed out")
    assert out["reason"] == "approval timed out"
    assert gov.reader.fresh_canary(MODEL) is None
    assert gov.reader.version_record(MODEL, canary)["status"] == "rejected"
    assert audit(gov)[-2:] == [("canary_stop", canary), ("reject", canary)]
