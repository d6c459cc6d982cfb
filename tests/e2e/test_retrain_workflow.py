"""The synthesized retrain-and-promote state machine, run on the local platform.

Every test drives the real stack: the execution is started on the local Step Functions with
the template's definition; training, validation and the governance steps are the real
handlers. Each test has its own model so the runs stay independent. The trainers of the
failure cases live in tests/e2e/fixtures/trainers (on the platform's PYTHONPATH).
"""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest

from ferry_core.audit.chain import AuditLog
from ferry_core.card import Card
from ferry_core.onboarding.builder import build_credit_risk, generate_credit_data
from ferry_core.retrain.approval import ApprovalGate
from ferry_local.platform import LocalPlatform
from tests.e2e.conftest import PlatformClient, register_and_promote

RunningPlatform = Any  # tests/e2e/conftest.py: the `ferry local up` child process
RUN_TIMEOUT_S = 180
# Long enough for the 20 canary requests the verdict needs even when a loaded 2-core machine
# serves only a few requests a second (8 s once gave 13 in a full run).
CANARY_SECONDS = 20


@pytest.fixture(scope="module")
def weak_champion() -> Any:
    return build_credit_risk(rows=1500, n_estimators=10, seed=3)


@pytest.fixture(scope="module")
def strong_champion() -> Any:
    return build_credit_risk(rows=6000, n_estimators=100, seed=5)


def _upload_training(platform: RunningPlatform, model: str, rows: int = 6000) -> str:
    buf = io.BytesIO()
    generate_credit_data(rows, seed=21).to_parquet(buf, index=False)
    key = f"training/{model}/labelled-{rows}.parquet"
    platform.client("s3", "data-scientist").put_object(
        Bucket=platform.outputs["DataBucketName"], Key=key, Body=buf.getvalue()
    )
    return f"s3://{platform.outputs['DataBucketName']}/{key}"


def _start(platform: RunningPlatform, model: str, **run_input: Any) -> str:
    """The data scientist starts a run through the governance API's retrain route."""
    body = {"model": model, "canary_percent": 0, **run_input}
    status, _, started = platform.request(
        "POST", "/v1/governance/retrain", body, identity="data-scientist"
    )
    assert status == 202, started
    return started["execution"]


def _wait(platform: RunningPlatform, arn: str) -> dict[str, Any]:
    sfn = platform.client("stepfunctions")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, f"run still RUNNING after {RUN_TIMEOUT_S} s"
        time.sleep(0.3)
    desc["outcome"] = json.loads(desc["output"]) if desc.get("output") else None
    return desc


def _states(platform: RunningPlatform, arn: str) -> list[str]:
    events = platform.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
    return [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]


def _run(platform: RunningPlatform, model: str, **run_input: Any) -> dict[str, Any]:
    arn = _start(platform, model, **run_input)
    desc = _wait(platform, arn)
    desc["states"] = _states(platform, arn)
    return desc


def _audit(platform: RunningPlatform, model: str) -> list[Any]:
    log = AuditLog(platform.client("dynamodb"), platform.outputs["AuditTableName"])
    assert log.verify(model).ok, log.verify(model).first_problem
    return log.entries(model)


def _item(platform: RunningPlatform, model: str, sk: str) -> dict[str, Any] | None:
    return (
        platform.client("dynamodb")
        .get_item(
            TableName=platform.outputs["RegistryTableName"],
            Key={"model": {"S": model}, "sk": {"S": sk}},
            ConsistentRead=True,
        )
        .get("Item")
    )


def _pointer(platform: RunningPlatform, model: str, stage: str) -> int | None:
    item = _item(platform, model, f"STAGE#{stage}")
    return int(item["version"]["N"]) if item and "version" in item else None


def _status(platform: RunningPlatform, model: str, version: int) -> str:
    item = _item(platform, model, f"V#{version:06d}")
    assert item is not None
    return item["status"]["S"]


def _setup(platform: RunningPlatform, register_model: Any, built: Any, model: str) -> Card:
    card = register_model(platform, built, model)
    _upload_training(platform, model)
    return card


def test_a_better_candidate_is_validated_registered_and_promoted(
    local_platform: RunningPlatform, register_model: Any, weak_champion: Any
) -> None:
    """
    Given a weak champion in production and newer labelled data under training/MODEL/
    When the data scientist starts a run (no canary, no approval in dev)
    Then the candidate is trained, passes every gate, is registered as v2 with its
        validation report on the card, staged, promoted, and the lock is released; the run's
        registry steps are recorded as the data scientist who requested it
    """
    model = "rt-good"
    champion = _setup(local_platform, register_model, weak_champion, model)
    desc = _run(local_platform, model, params={"n_estimators": 60})
    assert desc["status"] == "SUCCEEDED", desc
    assert desc["outcome"]["status"] == "promoted", desc["outcome"]
    version = desc["outcome"]["version"]
    assert version == champion.version + 1
    assert _pointer(local_platform, model, "production") == version
    assert _pointer(local_platform, model, "staging") == version
    for state in ("Train", "Validate", "Register", "Promote", "Notify", "Unlock"):
        assert state in desc["states"]
    item = _item(local_platform, model, f"V#{version:06d}")
    card = Card.model_validate_json(item["card"]["S"])
    assert card.validation["passed"] is True and card.validation["source"] == "validation"
    assert {c["name"] for c in card.validation["checks"]} >= {"parity", "metrics", "schema"}
    assert card.lineage.training_data_uri.endswith(f"training/{model}/labelled-6000.parquet")
    assert card.lineage.training_data_sha256 and card.lineage.entry_point
    events = [
        (e.event, e.version, (e.after or {}).get("production"))
        for e in _audit(local_platform, model)
    ]
    assert ("register", version, None) in events
    assert ("promote", version, version) in events
    assert _item(local_platform, model, "LOCK#retrain") is None
    scientist = local_platform.client("sts", "data-scientist").get_caller_identity()["Arn"]
    registered = [e for e in _audit(local_platform, model) if e.event == "register"]
    assert registered[-1].actor == scientist == card.lineage.registered_by


def test_a_worse_candidate_is_rejected_with_the_reason_in_the_audit_trail(
    local_platform: RunningPlatform, register_model: Any, strong_champion: Any
) -> None:
    model = "rt-worse"
    champion = _setup(local_platform, register_model, strong_champion, model)
    desc = _run(local_platform, model, params={"n_estimators": 2})
    assert desc["status"] == "SUCCEEDED"
    outcome = desc["outcome"]
    assert outcome["status"] == "rejected" and outcome["version"] is None
    assert "metrics" in outcome["reason"], outcome["reason"]
    assert "Register" not in desc["states"]
    assert _pointer(local_platform, model, "production") == champion.version
    rejections = [e for e in _audit(local_platform, model) if e.event == "reject"]
    assert len(rejections) == 1 and "metrics" in rejections[0].reason
    assert rejections[0].details["run_id"] == desc["name"]


def test_a_parity_failure_is_rejected(
    local_platform: RunningPlatform, register_model: Any, weak_champion: Any
) -> None:
    """A custom estimator whose ONNX converter disagrees with its Python: only parity sees it."""
    model = "rt-parity"
    _setup(local_platform, register_model, weak_champion, model)
    desc = _run(local_platform, model, entry_point="ferry_test_trainers:TemperedTrainer")
    assert desc["outcome"]["status"] == "rejected"
    assert "parity" in desc["outcome"]["reason"]
    (rejection,) = [e for e in _audit(local_platform, model) if e.event == "reject"]
    assert "parity" in rejection.reason


def test_a_failing_training_step_is_caught_audited_and_fails_the_run(
    local_platform: RunningPlatform, register_model: Any, weak_champion: Any
) -> None:
    model = "rt-broken"
    champion = _setup(local_platform, register_model, weak_champion, model)
    desc = _run(local_platform, model, entry_point="ferry_test_trainers:BrokenTrainer")
    assert desc["status"] == "FAILED"
    assert "divided by zero" in desc.get("cause", "")
    assert "RejectRun" in desc["states"] and "Validate" not in desc["states"]
    (rejection,) = [e for e in _audit(local_platform, model) if e.event == "reject"]
    assert "divided by zero" in rejection.reason and rejection.version is None
    assert _pointer(local_platform, model, "production") == champion.version
    assert _item(local_platform, model, "LOCK#retrain") is None


def test_one_run_per_model_at_a_time(
    local_platform: RunningPlatform, register_model: Any, weak_champion: Any
) -> None:
    model = "rt-lock"
    _setup(local_platform, register_model, weak_champion, model)
    first = _start(local_platform, model, require_approval=True, approval_timeout_seconds=60)
    _wait_for_approval_request(local_platform, model)
    second = _run(local_platform, model)
    assert second["status"] == "SUCCEEDED" and "AlreadyRunning" in second["states"]
    assert "Train" not in second["states"]
    local_platform.client("stepfunctions").stop_execution(executionArn=first)


def _wait_for_approval_request(platform: RunningPlatform, model: str) -> int:
    gate = ApprovalGate(platform.client("dynamodb"), platform.outputs["RegistryTableName"])
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        version = _pointer(platform, model, "staging")
        if version is not None and gate.pending(model, version):
            return version
        time.sleep(0.3)
    raise AssertionError("no approval was requested")


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_approval_gate_resumes_the_run_on_an_operators_decision(
    local_platform: RunningPlatform,
    register_model: Any,
    run_ferry: Any,
    weak_champion: Any,
    decision: str,
) -> None:
    """
    Given a run that requires an approval (as prod does)
    When the candidate waits at the gate and an operator runs `ferry approve|reject`
    Then the decision is audited and the run resumes: promoted, or rejected and unstaged
    """
    model = f"rt-{decision}"
    champion = _setup(local_platform, register_model, weak_champion, model)
    arn = _start(local_platform, model, require_approval=True, approval_timeout_seconds=120)
    version = _wait_for_approval_request(local_platform, model)
    # Not promoted while it waits.
    assert _pointer(local_platform, model, "production") == champion.version
    done = run_ferry(
        local_platform, "--as", "approver", decision, model, str(version), "--reason", "reviewed"
    )
    assert done.returncode == 0, done.stderr
    desc = _wait(local_platform, arn)
    events = [(e.event, e.version) for e in _audit(local_platform, model)]
    if decision == "approve":
        assert desc["outcome"]["status"] == "promoted"
        assert _pointer(local_platform, model, "production") == version
        assert ("approve", version) in events
    else:
        assert desc["outcome"]["status"] == "rejected"
        assert "reviewed" in desc["outcome"]["reason"]
        assert _pointer(local_platform, model, "production") == champion.version
        assert _pointer(local_platform, model, "staging") is None
        assert _status(local_platform, model, version) == "rejected"
        assert events.count(("reject", version)) == 1


def test_an_approval_that_does_not_come_in_time_rejects_the_version(
    local_platform: RunningPlatform, register_model: Any, weak_champion: Any
) -> None:
    model = "rt-timeout"
    champion = _setup(local_platform, register_model, weak_champion, model)
    desc = _run(local_platform, model, require_approval=True, approval_timeout_seconds=2)
    assert desc["outcome"]["status"] == "rejected"
    assert "no approval within 2 s" in desc["outcome"]["reason"]
    version = desc["outcome"]["version"]
    assert _status(local_platform, model, version) == "rejected"
    assert _pointer(local_platform, model, "production") == champion.version
    rejection = [e for e in _audit(local_platform, model) if e.event == "reject"]
    assert rejection[-1].version == version and "no approval" in rejection[-1].reason
    gate = ApprovalGate(
        local_platform.client("dynamodb"), local_platform.outputs["RegistryTableName"]
    )
    assert gate.pending(model, version) is None


class _Traffic:
    """Default-routed predict requests in a thread while a canary runs; counts versions."""

    def __init__(self, platform: RunningPlatform, model: str, rows: list[dict[str, Any]]) -> None:
        self.platform, self.model, self.rows = platform, model, rows
        self.statuses: dict[int, int] = {}
        self.versions: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            body = {"instances": [self.rows[i % len(self.rows)]]}
            status, _, payload = self.platform.request(
                "POST", f"/v1/models/{self.model}/predict", body
            )
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.versions[payload["version"]] = self.versions.get(payload["version"], 0) + 1
            i += 1
            time.sleep(0.02)


def _rows() -> list[dict[str, Any]]:
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, records

    return records(generate_credit_data(50, seed=99), CREDIT_RISK_SCHEMA)


def _wait_for_staging(platform: RunningPlatform, model: str, after: int) -> int:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        version = _pointer(platform, model, "staging")
        if version is not None and version > after:
            return version
        time.sleep(0.1)
    raise AssertionError("no candidate was staged")


def _wait_for_canary(platform: RunningPlatform, model: str) -> int:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        item = _item(platform, model, "CANARY")
        if item is not None:
            return int(item["version"]["N"])
        time.sleep(0.2)
    raise AssertionError("the canary never started")


def test_a_healthy_canary_is_promoted(
    local_platform: RunningPlatform, register_model: Any, weak_champion: Any
) -> None:
    model = "rt-canary-ok"
    champion = _setup(local_platform, register_model, weak_champion, model)
    with _Traffic(local_platform, model, _rows()) as traffic:
        arn = _start(local_platform, model, canary_percent=50, canary_seconds=CANARY_SECONDS)
        version = _wait_for_canary(local_platform, model)
        desc = _wait(local_platform, arn)
    assert desc["outcome"]["status"] == "promoted", desc["outcome"]
    assert _pointer(local_platform, model, "production") == version
    assert set(traffic.versions) >= {champion.version, version}  # both served during the canary
    assert set(traffic.statuses) == {200}
    events = [e.event for e in _audit(local_platform, model)]
    assert "canary_start" in events and "canary_stop" in events
    assert _item(local_platform, model, "CANARY") is None


def test_an_error_spike_during_the_canary_rolls_it_back_and_says_so(
    tmp_path_factory: pytest.TempPathFactory, weak_champion: Any
) -> None:
    """
    Given a canary taking half of the default traffic
    When the canary version's artifact no longer proves out (the checksum its registry record
        holds stops matching its bytes, and no cached copy survives), so its requests answer
        503. No person may write the registry, so the fault is injected as the account itself
        (the platform's own principal) would edit the table, on a platform of this test's own.
    Then the verdict compares error rates, the canary is stopped, the version rejected,
        production never moved, and the audit trail says why
    """
    model = "rt-canary-bad"
    state = tmp_path_factory.mktemp("canary-fault")
    with LocalPlatform(state_dir=state, restore=False) as running:
        assert running.clients is not None
        platform = PlatformClient(running.info())
        _check_a_canary_fault(platform, running.clients["dynamodb"], state, weak_champion, model)


def _check_a_canary_fault(
    local_platform: PlatformClient, account: Any, state: Any, weak_champion: Any, model: str
) -> None:
    champion = _setup(local_platform, register_and_promote, weak_champion, model)
    with _Traffic(local_platform, model, _rows()) as traffic:
        arn = _start(local_platform, model, canary_percent=50, canary_seconds=CANARY_SECONDS)
        # The fault lands once the candidate is staged, before the scorer ever loaded it.
        version = _wait_for_staging(local_platform, model, champion.version)
        item = _item(local_platform, model, f"V#{version:06d}")
        card = Card.model_validate_json(item["card"]["S"])
        tampered = card.model_copy(
            update={"artifact": card.artifact.model_copy(update={"sha256": "0" * 64})}
        )
        account.update_item(
            TableName=local_platform.outputs["RegistryTableName"],
            Key={"model": {"S": model}, "sk": {"S": f"V#{version:06d}"}},
            UpdateExpression="SET card = :card",
            ExpressionAttributeValues={":card": {"S": tampered.model_dump_json()}},
        )
        scorer = local_platform.outputs["ScoringFunctionName"]
        for cached in (state / "tmp" / scorer).rglob(f"{card.artifact.sha256}*"):
            cached.unlink()
        assert _wait_for_canary(local_platform, model) == version
        desc = _wait(local_platform, arn)
    assert desc["outcome"]["status"] == "rolled_back", desc["outcome"]
    assert "5xx rate" in desc["outcome"]["reason"]
    assert traffic.statuses.get(503, 0) > 0
    assert _pointer(local_platform, model, "production") == champion.version
    assert _status(local_platform, model, version) == "rejected"
    entries = _audit(local_platform, model)
    stop = [e for e in entries if e.event == "canary_stop"]
    assert stop and stop[-1].details["outcome"] == "rolled_back" and "5xx" in stop[-1].reason
    assert [e for e in entries if e.event == "reject" and e.version == version]
    assert _item(local_platform, model, "CANARY") is None
