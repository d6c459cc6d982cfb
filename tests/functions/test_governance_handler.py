"""The governance function under moto: its routes (the HTTP API's IAM context in the event), the
promotions and rollback the scoring API follows, and registration from a candidate bundle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
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
from ferry_core.retrain.candidate import write_bundle
from ferry_local.events import LambdaContext, http_api_event
from ferry_local.handlers import load_handler

MODEL = "credit-risk"
SCIENTIST = "arn:aws:sts::123456789012:assumed-role/Ferry-local-DataScientist/alice"
APPROVER = "arn:aws:sts::123456789012:assumed-role/Ferry-local-Approver/bob"
GOVERNANCE_ROUTES = (
    "POST /v1/governance/register",
    "POST /v1/governance/validate",
    "POST /v1/governance/promote/{stage}",
    "POST /v1/governance/rollback/{stage}",
    "POST /v1/governance/approve",
    "POST /v1/governance/reject",
    "POST /v1/governance/archive",
    "POST /v1/governance/retrain",
)


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
    module.services.cache_clear()
    yield module
    module.governance.cache_clear()
    module.monitors.cache_clear()
    module.services.cache_clear()


@pytest.fixture
def scoring(env) -> Iterator[ModuleType]:
    module = load_handler("scoring")
    module.service.cache_clear()
    yield module
    module.service.cache_clear()


def call(
    module: ModuleType, path: str, body: Any, caller: str | None = SCIENTIST
) -> tuple[int, dict[str, Any]]:
    """POST a governance route as API Gateway delivers it: signed by `caller` (the IAM
    authorizer's context), or with no authorizer context at all (None)."""
    event = http_api_event("POST", path, json.dumps(body), routes=GOVERNANCE_ROUTES)
    if caller is not None:
        event["requestContext"]["authorizer"] = {"iam": {"userArn": caller}}
    resp = module.lambda_handler(event, LambdaContext("ferry-governance"))
    return resp["statusCode"], json.loads(resp["body"])


def invoke(module: ModuleType, action: str, caller: str = APPROVER, **body: Any) -> dict[str, Any]:
    """A governance action through its route; the body as answered (2xx asserted by callers)."""
    path = f"/v1/governance/{action}"
    if action in ("promote", "rollback"):
        path += f"/{body.pop('stage', 'production')}"
    return call(module, path, body, caller)[1]


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
    assert invoke(governance, "promote", model=MODEL, version=1)["ok"]
    assert score(scoring, instances)["version"] == 1
    gate_pass(gov, MODEL, 2)
    out = invoke(governance, "promote", model=MODEL, version=2, reason="auc")
    assert out["ok"] and out["after"] == {"production": 2} and out["event_id"]
    served = score(scoring, instances)
    assert served["version"] == 2
    np.testing.assert_allclose(
        [p["score"] for p in served["predictions"]], pipe2.predict_proba(frame)[:, 1], atol=1e-5
    )

    back = invoke(governance, "rollback", model=MODEL, reason="p99")
    assert back["ok"] and (back["before"], back["after"]) == ({"production": 2}, {"production": 1})
    served = score(scoring, instances)
    assert served["version"] == 1
    np.testing.assert_allclose(
        [p["score"] for p in served["predictions"]], fitted[0].predict_proba(frame)[:, 1], atol=1e-5
    )
    assert gov.audit.verify(MODEL).ok


def test_refusals_are_statuses_in_the_api_error_shape(governance, aws, boto, built) -> None:
    """Given v1, each refusal is its status with `{"error", "message", "details"}`: never a 500
    for anything a client sent."""
    register(built, MODEL, boto["s3"], aws.model_bucket, governance.governance(), Lineage(), "a")
    cases = [
        ("/v1/governance/promote/production", {"model": MODEL, "version": 7}, 404),
        ("/v1/governance/rollback/production", {"model": MODEL}, 409),
        ("/v1/governance/promote/production", {"model": MODEL}, 400),
        ("/v1/governance/approve", {"model": MODEL, "version": 1, "stage": "x"}, 400),
        ("/v1/governance/archive", "not an object", 400),
        ("/v1/governance/register", {"model": MODEL, "candidate": "no-such-run"}, 400),
        ("/v1/governance/retrain", {"model": MODEL, "canary_percent": 90}, 400),
    ]
    for path, body, status in cases:
        got, answer = call(governance, path, body)
        assert got == status, (path, body, answer)
        assert set(answer) == {"error", "message", "details"} and answer["message"]
    got, answer = call(governance, "/v1/governance/approve", {"model": MODEL, "version": 1}, None)
    assert (got, answer["error"]) == (403, "forbidden")
    got, answer = call(governance, "/v1/governance/validate", {"model": MODEL, "version": 1})
    assert got == 409 and "no validation state machine" in answer["message"]


def test_the_actor_is_the_verified_caller_never_the_body(governance, aws, boto, built) -> None:
    """Given a body naming an actor, the route refuses it (400 naming `actor`) and nothing is
    recorded; the same decision without it is recorded as the signed caller's ARN."""
    register(built, MODEL, boto["s3"], aws.model_bucket, governance.governance(), Lineage(), "a")
    forged = {"model": MODEL, "version": 1, "actor": "mallory"}
    status, answer = call(governance, "/v1/governance/approve", forged, APPROVER)
    assert (status, answer["error"]) == (400, "bad_request") and "actor" in answer["message"]
    status, answer = call(governance, "/v1/governance/approve", {"model": MODEL, "version": 1})
    assert status == 200 and answer["after"] == {"status": "approved"}
    actors = [e.actor for e in governance.governance().audit.entries(MODEL)]
    assert actors == ["a", SCIENTIST] and "mallory" not in actors


def test_register_from_a_candidate_bundle_records_the_registrant(
    governance, aws, boto, built
) -> None:
    """Given a bundle uploaded under candidates/ (as `ferry register` does), the register route
    makes it the next version: files under models/, quick checks as its validation, the
    caller's ARN as registrant; a second registration of the same bundle is refused."""
    run_id = "manual-20261203T170000Z-0a1b2c3d"
    write_bundle(boto["s3"], aws.model_bucket, built, MODEL, run_id, Lineage())
    body = {"model": MODEL, "candidate": run_id, "reason": "first"}
    status, answer = call(governance, "/v1/governance/register", body)
    assert (
        status == 200
        and answer["ok"]
        and (answer["event"], answer["version"])
        == (
            "register",
            1,
        )
    )
    card = governance.governance().reader.card(MODEL, 1)
    assert card.lineage.registered_by == SCIENTIST
    assert card.validation["passed"] and card.validation["candidate"]["run_id"] == run_id
    assert card.artifact.uri.endswith(f"models/{MODEL}/v1/model.onnx")
    (entry,) = governance.governance().audit.entries(MODEL)
    assert (entry.event, entry.actor, entry.reason) == ("register", SCIENTIST, "first")
    status, answer = call(governance, "/v1/governance/register", body)
    assert (status, answer["error"]) == (409, "registration_refused")


def test_retrain_starts_a_run_requested_by_the_caller(governance, aws, boto, monkeypatch) -> None:
    """The retrain route starts the retraining state machine with the caller as `requested_by`
    and answers 202 with the execution."""
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    machine = sfn.create_state_machine(
        name="Retrain",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/retrain",
    )["stateMachineArn"]
    monkeypatch.setenv("RETRAIN_STATE_MACHINE_ARN", machine)
    governance.services.cache_clear()
    body = {"model": MODEL, "reason": "new data", "params": {"n_estimators": 5}}
    status, answer = call(governance, "/v1/governance/retrain", body)
    assert status == 202 and answer["run_id"] in answer["execution"]
    run = json.loads(sfn.describe_execution(executionArn=answer["execution"])["input"])
    assert run["requested_by"] == SCIENTIST and run["params"] == {"n_estimators": 5}
    assert run["model"] == MODEL and run["reason"] == "new data"
    status, answer = call(governance, "/v1/governance/retrain", {**body, "requested_by": "x"})
    assert status == 400 and "requested_by" in answer["message"]


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
    """Given the ValidateVersion machine's ARN in the function's environment, the validate route
    answers 202 with the execution it started (as the verified caller), and the machine's
    `record_validation` step writes the result on the version, audited as `validate`."""
    sfn, arn = validate_machine
    monkeypatch.setenv("VALIDATION_STATE_MACHINE_ARN", arn)
    governance.governance.cache_clear()
    gov = governance.governance()
    register(built, MODEL, boto["s3"], aws.model_bucket, gov, Lineage(), "alice")
    status, started = call(
        governance, "/v1/governance/validate", {"model": MODEL, "version": 1}, APPROVER
    )
    assert status == 202 and started["execution"].startswith(
        arn.replace("stateMachine", "execution")
    )
    execution_input = json.loads(sfn.describe_execution(executionArn=started["execution"])["input"])
    assert execution_input == {"model": MODEL, "version": 1, "requested_by": APPROVER}
    result = {"passed": False, "champion_version": None, "summary": "failed segments"}
    recorded = governance.lambda_handler(
        {
            "action": "record_validation",
            "model": MODEL,
            "version": 1,
            "run_id": "e1",
            "actor": "carol",
            "details": {"result": result, "execution": started["execution"]},
        },
        LambdaContext("ferry-governance"),
    )
    assert recorded["passed"] is False
    assert gov.reader.version_record(MODEL, 1)["validation"]["summary"] == "failed segments"
    status, refused = call(
        governance, "/v1/governance/promote/production", {"model": MODEL, "version": 1}, APPROVER
    )
    assert (status, refused["error"]) == (409, "promotion_refused")
    assert "failed segments" in refused["message"]
