"""The production gate on the local platform: a registered version is gated by the
ValidateVersion state machine (the real validation and governance handlers, each with its own
role) and promotion to production follows its recorded result.

Validation is started as the governance API starts it: the governance function, invoked as
the Lambda service invokes it for its route, starts the machine with its own role; the test
then promotes as the admin. Runs `LocalPlatform` in this process (the Lambda runtime is how
the route reaches the function).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ferry_core.card import Lineage
from ferry_core.errors import PromotionRefused
from ferry_core.registry.governance import Governance, connect
from ferry_core.registry.registration import register
from ferry_local.platform import LocalPlatform

MODEL = "gated-credit"
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    state = Path(tmp_path_factory.mktemp("gated"))
    with LocalPlatform(state_dir=state, restore=False) as running:
        yield running


def _client(platform: LocalPlatform, service: str, identity: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=platform.aws_endpoint_url,
        region_name=platform.region,
        **platform.identities[identity].boto3_kwargs(),
    )


def _governance(platform: LocalPlatform, identity: str, tmp_path: Path) -> Governance:
    """Governance with `identity`'s credentials, as the `ferry` command builds it."""
    out = platform.outputs
    return connect(
        dynamodb=_client(platform, "dynamodb", identity),
        s3=_client(platform, "s3", identity),
        events=_client(platform, "events", identity),
        registry_table=out["RegistryTableName"],
        audit_table=out["AuditTableName"],
        anchor_bucket=out["AuditAnchorBucketName"],
        cache_dir=str(tmp_path / identity),
        env="local",
    )


def _register(platform: LocalPlatform, built: Any, tmp_path: Path) -> int:
    scientist = platform.identities["data-scientist"]
    card, _ = register(
        built,
        MODEL,
        _client(platform, "s3", "data-scientist"),
        platform.outputs["ModelBucketName"],
        _governance(platform, "data-scientist", tmp_path),
        Lineage(),
        scientist.arn,
    )
    return card.version


def _finished(platform: LocalPlatform, execution: str) -> dict[str, Any]:
    """The execution once it ended, observed with the platform's own session (the test
    watches; it does not act as any persona here)."""
    assert platform.clients is not None
    sfn = platform.clients["stepfunctions"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (desc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "ValidateVersion still RUNNING"
        time.sleep(0.5)
    return desc


def _validate(platform: LocalPlatform, version: int) -> dict[str, Any]:
    """Start validation through the governance function as the approver; wait for the end."""
    approver = platform.identities["approver"].arn
    event = {"action": "validate", "model": MODEL, "version": version, "actor": approver}
    assert platform.runtime is not None
    payload, errored, logs = platform.runtime.invoke(
        platform.outputs["GovernanceFunctionName"], event
    )
    answer = json.loads(payload)
    assert not errored and answer["ok"], (answer, logs[-2000:])
    desc = _finished(platform, answer["execution"])
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["input"])["requested_by"] == approver
    return answer


def test_a_worse_version_is_refused_at_production_and_a_good_one_passes(
    platform: LocalPlatform, candidate: Any, worse: Any, tmp_path: Path
) -> None:
    """
    Given a first version gated (no champion: every check still runs) and promoted
    When a version that ranks applicants at random is registered and gated against it
    Then promotion to production is refused with the gate's reason and production stays
    And a good version gated against the same champion is promoted; every validation is an
        audited `validate` entry by the approver who asked for it
    """
    admin = _governance(platform, "admin", tmp_path)
    first = _register(platform, candidate, tmp_path)
    with pytest.raises(PromotionRefused, match="ferry validate"):
        admin.promote(MODEL, first, actor="admin")
    _validate(platform, first)
    admin.promote(MODEL, first, actor="admin")

    bad = _register(platform, worse, tmp_path)
    _validate(platform, bad)
    result = admin.reader.version_record(MODEL, bad)["validation"]
    assert (result["passed"], result["champion_version"]) == (False, first)
    with pytest.raises(
        PromotionRefused, match=r"did not pass the validation gate: failed .*metrics"
    ):
        admin.promote(MODEL, bad, actor="admin")
    assert admin.reader.fresh_pointer(MODEL, "production").version == first

    good = _register(platform, candidate, tmp_path)
    _validate(platform, good)
    assert admin.promote(MODEL, good, actor="admin").after == {"production": good}
    validations = [e for e in admin.audit.entries(MODEL) if e.event == "validate"]
    assert [(e.version, e.details["passed"]) for e in validations] == [
        (first, True),
        (bad, False),
        (good, True),
    ]
    assert {e.actor for e in validations} == {platform.identities["approver"].arn}
    assert admin.audit.verify(MODEL).ok


def test_a_version_the_gate_cannot_run_on_is_recorded_as_failed(
    platform: LocalPlatform, candidate: Any, tmp_path: Path
) -> None:
    """An ONNX file registered without reference rows: the gate cannot run, the machine
    records why (a failed result) and ends failed; production refuses the version."""
    from ferry_core.onboarding.intake import build_from_onnx

    onnx_only = build_from_onnx(candidate.onnx_bytes, candidate.schema)
    version = _register(platform, onnx_only, tmp_path)
    approver = platform.identities["approver"].arn
    event = {"action": "validate", "model": MODEL, "version": version, "actor": approver}
    assert platform.runtime is not None
    payload, _, _ = platform.runtime.invoke(platform.outputs["GovernanceFunctionName"], event)
    execution = json.loads(payload)["execution"]
    assert _finished(platform, execution)["status"] == "FAILED"
    admin = _governance(platform, "admin", tmp_path)
    result = admin.reader.version_record(MODEL, version)["validation"]
    assert result["passed"] is False and "without reference rows" in result["summary"]
    assert result["execution"] == execution
