"""Reliability property 7: load is held through a promotion and a rollback.

Against the session's `ferry local up` (tests/e2e/conftest.py), with Locust in its own process.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ferry_bench.load_held import (
    Probe,
    Step,
    Switch,
    judge,
    run,
    throttle_checks,
)
from ferry_bench.properties import Mode, PropertyResult
from ferry_bench.running_platform import RunningPlatform
from infra.config import ENVIRONMENTS


@pytest.fixture(scope="module")
def platform(local_platform: Any) -> RunningPlatform:
    return RunningPlatform.from_info(local_platform.info)


def test_fast_mode_holds_through_a_promotion_and_a_rollback(platform: RunningPlatform) -> None:
    """
    Given the local platform serving v1 of a fresh model, with v2 registered
    When 10 Locust users load it and production moves to v2 and back to v1 meanwhile
    Then no request fails, every probe response is wholly v1 or wholly v2 (or a 429 of the
        stage's throttling, which the local API applies as API Gateway does), both were
        served, and the stage's throttling is configured in the template the platform runs
    """
    result = PropertyResult(7, "Load is held", "fast")
    steps, step, switch = run(Mode(long=False), result, platform)
    assert result.violations == []
    assert steps == [step] and step.users == 10
    assert step.requests > 100 and step.failures == 0 and step.rps > 0
    assert 0 < step.p50_ms <= step.p95_ms <= step.p99_ms
    assert set(switch.responses) - {"throttled"} == {"v1", "v2"}
    assert switch.responses["v1"] > 0 and switch.responses["v2"] > 0
    assert switch.during_load and switch.v2_seen_at and switch.v1_again_at
    dev = ENVIRONMENTS["dev"]  # the local stack is dev's settings under another name
    throttle = f"{dev.api_throttle_rate_limit:g}/s, burst {dev.api_throttle_burst_limit}"
    assert result.figures["throttle local (rate/burst)"] == throttle


def _probe() -> Probe:
    return Probe("http://127.0.0.1:9", "m", {1: [0.1, 0.2], 2: [0.3, 0.4]}, old=1)


def test_a_response_mixing_versions_or_lying_about_its_version_is_caught() -> None:
    probe = _probe()
    probe.judge(200, json.dumps({"version": 1, "predictions": [{"score": 0.1}, {"score": 0.2}]}))
    probe.judge(200, json.dumps({"version": 1, "predictions": [{"score": 0.1}, {"score": 0.4}]}))
    probe.judge(200, json.dumps({"version": 2, "predictions": [{"score": 0.1}, {"score": 0.2}]}))
    probe.judge(200, json.dumps({"version": 3, "predictions": [{"score": 0.1}, {"score": 0.2}]}))
    probe.judge(503, '{"error": "model_unavailable"}')
    assert probe.switch.responses == {
        "v1": 1,
        "mixed": 2,
        "unknown version": 1,
        "dropped": 1,
    }
    assert any("names v2, scored by v1" in p for p in probe.switch.problems)
    result = PropertyResult(7, "Load is held", "fast")
    step = Step(10, 5, requests=100, failures=3, errors=["predict: 500 (×3)"])
    judge([step], step, probe.switch, result)
    text = "\n".join(result.violations)
    assert "3 of 100 failed" in text
    assert "'mixed': 2" in text and "'dropped': 1" in text
    assert "promotion was never seen" in text


def test_probes_against_a_model_the_api_does_not_serve_count_drops(
    platform: RunningPlatform,
) -> None:
    probe = Probe(platform.api_url, "no-such-model", {1: [0.5]}, old=1, auth=platform.auth())
    with probe:
        assert probe.wait_for("v2_seen_at", 0.5) is False
    assert probe.switch.responses["dropped"] > 0 and "v1" not in probe.switch.responses
    assert any(p.startswith("404") for p in probe.switch.problems)


def test_a_stage_without_throttling_is_reported(local_platform: Any) -> None:
    from ferry_bench.load_held import _local_template

    template = _local_template()
    assert template is not None, "the platform runs a synthesized Ferry-local template"
    ok = PropertyResult(7, "t", "fast")
    throttle_checks({"local": template}, ok)
    assert ok.violations == []
    broken = copy.deepcopy(template)
    for r in broken["Resources"].values():
        if r["Type"] == "AWS::ApiGatewayV2::Stage":
            del r["Properties"]["DefaultRouteSettings"]
    result = PropertyResult(7, "t", "fast")
    throttle_checks({"local": broken}, result)
    assert result.violations == ["local: an API stage without throttling ([None])"]


def test_a_switch_that_never_happens_is_a_violation() -> None:
    result = PropertyResult(7, "t", "fast")
    step = Step(10, 5, requests=50, failures=0, rps=10, p50_ms=1, p95_ms=2, p99_ms=3)
    judge([step], step, Switch(), result)
    assert any("rollback was never seen" in v for v in result.violations)
    assert any("Locust had finished" in v for v in result.violations)


def test_a_throttled_probe_is_counted_apart_and_is_no_violation() -> None:
    probe = _probe()
    probe.judge(429, '{"message": "Too Many Requests"}')
    assert probe.switch.responses == {"throttled": 1} and probe.switch.problems == []
