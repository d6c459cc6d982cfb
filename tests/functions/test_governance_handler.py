"""The governance function under moto: promotions and a rollback that the scoring API follows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from ferry_core.card import Lineage
from ferry_core.onboarding.builder import (
    AGE_BANDS,
    CREDIT_RISK_SCHEMA,
    build,
    fit_credit_risk,
    records,
    to_model_frame,
)
from ferry_core.registry.registration import register
from ferry_local.events import LambdaContext, http_api_event
from ferry_local.handlers import load_handler

MODEL = "credit-risk"


@pytest.fixture
def env(aws, monkeypatch) -> None:
    for key, value in {
        "FERRY_ENV": "local",
        "MODEL_BUCKET": aws.model_bucket,
        "REGISTRY_TABLE": aws.registry_table,
        "AUDIT_TABLE": aws.audit_table,
        "AUDIT_ANCHOR_BUCKET": aws.anchor_bucket,
        "REGISTRY_CACHE_SECONDS": "0",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def governance(env, tmp_path, monkeypatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "gov-cache"))
    module = load_handler("governance")
    module.governance.cache_clear()
    module.monitors.cache_clear()
    yield module
    module.governance.cache_clear()
    module.monitors.cache_clear()


@pytest.fixture
def scoring(env) -> Iterator[ModuleType]:
    module = load_handler("scoring")
    module.service.cache_clear()
    yield module
    module.service.cache_clear()


def invoke(module: ModuleType, **request: Any) -> dict[str, Any]:
    return module.lambda_handler(request, LambdaContext("ferry-governance"))


def score(scoring: ModuleType, instances: list[dict[str, Any]]) -> dict[str, Any]:
    event = http_api_event(
        "POST",
        f"/v1/models/{MODEL}/predict",
        json.dumps({"instances": instances}),
        routes=scoring.ROUTES,
    )
    resp = scoring.lambda_handler(event, LambdaContext("ferry-scoring"))
    assert resp["statusCode"] == 200, resp["body"]
    return json.loads(resp["body"])


def test_rollback_restores_the_previous_version_and_scoring_serves_it(
    governance, scoring, aws, boto, built, fitted, gate_pass
) -> None:
    """Given v1 and a different v2 promoted in turn through the governance function, when it
    rolls production back, the scoring API answers with v1 and v1's own scores."""
    pipe2, train2, valid2 = fit_credit_risk(rows=800, n_estimators=5, seed=3)
    built2 = build(pipe2, CREDIT_RISK_SCHEMA, train2, valid2, segments={"age_band": AGE_BANDS})
    gov = governance.governance()
    for b in (built, built2):
        register(b, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    instances = records(fitted[2].head(20), CREDIT_RISK_SCHEMA)
    frame = to_model_frame(fitted[2].head(20), CREDIT_RISK_SCHEMA)

    gate_pass(gov, MODEL, 1)
    assert invoke(governance, action="promote", model=MODEL, version=1, actor="sfn")["ok"]
    assert score(scoring, instances)["version"] == 1
    gate_pass(gov, MODEL, 2)
    out = invoke(governance, action="promote", model=MODEL, version=2, actor="sfn", reason="auc")
    assert out["ok"] and out["after"] == {"production": 2} and out["event_id"]
    served = score(scoring, instances)
    assert served["version"] == 2
    np.testing.assert_allclose(
        [p["score"] for p in served["predictions"]], pipe2.predict_proba(frame)[:, 1], atol=1e-5
    )

    back = invoke(governance, action="rollback", model=MODEL, actor="oncall", reason="p99")
    assert back["ok"] and (back["before"], back["after"]) == ({"production": 2}, {"production": 1})
    served = score(scoring, instances)
    assert served["version"] == 1
    np.testing.assert_allclose(
        [p["score"] for p in served["predictions"]], fitted[0].predict_proba(frame)[:, 1], atol=1e-5
    )
    assert gov.audit.verify(MODEL).ok


def test_refusals_and_bad_requests_are_results_not_crashes(governance, aws, boto, built) -> None:
    register(built, MODEL, boto["s3"], aws.model_bucket, governance.governance(), Lineage(), "a")
    bad = invoke(governance, action="launch", model=MODEL, actor="sfn")
    assert (bad["ok"], bad["error"]) == (False, "bad_request") and "action" in bad["message"]
    missing = invoke(governance, action="promote", model=MODEL, version=7, actor="sfn")
    assert (missing["ok"], missing["error"]) == (False, "version_not_found")
    nothing = invoke(governance, action="rollback", model=MODEL, actor="sfn")
    assert (nothing["ok"], nothing["error"]) == (False, "promotion_refused")
    approved = invoke(
        governance,
        action="approve",
        model=MODEL,
        version=1,
        actor="approver",
        details={"task_token_id": "abc"},
    )
    assert approved["ok"] and approved["after"] == {"status": "approved"}


def test_a_registration_event_puts_the_models_alarms(governance, monkeypatch) -> None:
    """
    Given the function's model alarm settings (as infra/environment.py builds them)
    When a `Model Version Registered` registry event reaches it (EventBridge)
    Then the model's five alarms exist, notifying the topic; the same event again changes
        nothing; any other event is refused without an alarm put
    """
    import boto3

    from infra.config import ENVIRONMENTS
    from infra.environment import model_alarm_variables

    topic = "arn:aws:sns:us-east-1:123456789012:ferry-alarms"
    for name, value in model_alarm_variables(ENVIRONMENTS["dev"], topic_arn=topic).items():
        monkeypatch.setenv(name, value)
    event = {
        "source": "ferry.registry",
        "detail-type": "Model Version Registered",
        "detail": {"model": "fraud", "event": "register", "version": 1},
    }
    first = governance.lambda_handler(event, LambdaContext("ferry-governance"))
    again = governance.lambda_handler(event, LambdaContext("ferry-governance"))
    assert first == again and first["ok"] and len(first["alarms"]) == 5
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    found = cloudwatch.describe_alarms(AlarmNamePrefix="Ferry-local-model-fraud-")["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in found) == sorted(first["alarms"])
    assert all(a["AlarmActions"] == [topic] for a in found)
    with pytest.raises(ValueError):
        governance.lambda_handler(
            {**event, "detail-type": "Model Version Promoted"}, LambdaContext("ferry-governance")
        )


def test_validate_starts_the_machine_and_record_validation_writes_its_result(
    governance, aws, boto, built, monkeypatch, validate_machine
) -> None:
    """Given the ValidateVersion machine's ARN in the function's environment, `validate`
    answers with the execution it started (as the verified actor), and the machine's
    `record_validation` step writes the result on the version, audited as `validate`."""
    sfn, arn = validate_machine
    monkeypatch.setenv("VALIDATION_STATE_MACHINE_ARN", arn)
    governance.governance.cache_clear()
    gov = governance.governance()
    register(built, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    started = invoke(governance, action="validate", model=MODEL, version=1, actor="carol")
    assert started["ok"] and started["execution"].startswith(
        arn.replace("stateMachine", "execution")
    )
    execution_input = json.loads(sfn.describe_execution(executionArn=started["execution"])["input"])
    assert execution_input == {"model": MODEL, "version": 1, "requested_by": "carol"}
    result = {"passed": False, "champion_version": None, "summary": "failed segments"}
    recorded = invoke(
        governance,
        action="record_validation",
        model=MODEL,
        version=1,
        run_id="e1",
        actor="carol",
        details={"result": result, "execution": started["execution"]},
    )
    assert recorded["passed"] is False
    assert gov.reader.version_record(MODEL, 1)["validation"]["summary"] == "failed segments"
    refused = invoke(governance, action="promote", model=MODEL, version=1, actor="bob")
    assert (refused["ok"], refused["error"]) == (False, "promotion_refused")
    assert "failed segments" in refused["message"]
