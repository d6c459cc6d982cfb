"""The production gate on the local platform: a registered version is gated by the
ValidateVersion state machine (the real validation and governance handlers, each with its own
role) and promotion to production follows its recorded result.

Everything goes through the governance API as the personas would: the data scientist uploads
a candidate bundle and registers it (which starts its validation), the approver asks for a
validation and promotes. Runs `LocalPlatform` in this process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry_core.audit.chain import AuditLog
from ferry_core.card import Lineage
from ferry_core.registry.policies import wait_for_gate
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import write_bundle
from ferry_core.retrain.manual import manual_run_id
from ferry_local.platform import LocalPlatform
from tests.e2e.conftest import PlatformClient

MODEL = "gated-credit"
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    state = Path(tmp_path_factory.mktemp("gated"))
    with LocalPlatform(state_dir=state, restore=False) as running:
        yield running


def _api(platform: LocalPlatform) -> PlatformClient:
    return PlatformClient(platform.info())


def _reader(platform: LocalPlatform) -> RegistryReader:
    table = platform.outputs["RegistryTableName"]
    return RegistryReader(_api(platform).client("dynamodb", "admin"), table, pointer_ttl_seconds=0)


def _register(platform: LocalPlatform, built: Any) -> tuple[int, str]:
    """The data scientist uploads `built` as a candidate bundle and registers it; the version
    and the validation execution the registration started."""
    api, run_id = _api(platform), manual_run_id()
    s3 = api.client("s3", "data-scientist")
    write_bundle(s3, platform.outputs["ModelBucketName"], built, MODEL, run_id, Lineage())
    body = {"model": MODEL, "candidate": run_id}
    status, _, answer = api.request(
        "POST", "/v1/governance/register", body, identity="data-scientist"
    )
    assert status == 200 and answer["execution"], answer
    return answer["version"], answer["execution"]


def _promote(platform: LocalPlatform, version: int) -> tuple[int, dict[str, Any]]:
    body = {"model": MODEL, "version": version}
    status, _, answer = _api(platform).request(
        "POST", "/v1/governance/promote/production", body, identity="approver"
    )
    return status, answer


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


def _gate(platform: LocalPlatform, version: int, execution: str) -> dict[str, Any]:
    result = wait_for_gate(_reader(platform), MODEL, version, execution, RUN_TIMEOUT_S)
    assert result is not None, f"v{version}: no gate result recorded by {execution}"
    return result


def test_a_worse_version_is_refused_at_production_and_a_good_one_passes(
    platform: LocalPlatform, candidate: Any, worse: Any
) -> None:
    """
    Given a first version registered (its registration starts the gate; no champion: every
        check still runs), gated and promoted
    When a version that ranks applicants at random is registered and gated against it
    Then promotion to production is refused with the gate's reason and production stays
    And a good version, gated again at the approver's request, is promoted; every validation
        is an audited `validate` entry by the identity that asked for it
    """
    first, execution = _register(platform, candidate)
    assert _gate(platform, first, execution)["passed"] is True
    assert _promote(platform, first)[0] == 200

    bad, execution = _register(platform, worse)
    result = _gate(platform, bad, execution)
    assert (result["passed"], result["champion_version"]) == (False, first)
    status, refused = _promote(platform, bad)
    assert status == 409 and "did not pass the validation gate" in refused["message"]
    assert "metrics" in refused["message"]
    assert _reader(platform).fresh_pointer(MODEL, "production").version == first

    good, execution = _register(platform, candidate)
    _gate(platform, good, execution)
    status, _, started = _api(platform).request(
        "POST", "/v1/governance/validate", {"model": MODEL, "version": good}, identity="approver"
    )
    assert status == 202, started
    assert _finished(platform, started["execution"])["status"] == "SUCCEEDED"
    assert _gate(platform, good, started["execution"])["passed"] is True
    status, promoted = _promote(platform, good)
    assert status == 200 and promoted["after"] == {"production": good}
    audit = AuditLog(_api(platform).client("dynamodb", "admin"), platform.outputs["AuditTableName"])
    validations = [e for e in audit.entries(MODEL) if e.event == "validate"]
    assert [(e.version, e.details["passed"]) for e in validations] == [
        (first, True),
        (bad, False),
        (good, True),
        (good, True),
    ]
    scientist, approver = (platform.identities[p].arn for p in ("data-scientist", "approver"))
    assert [e.actor for e in validations] == [scientist, scientist, scientist, approver]
    assert audit.verify(MODEL).ok


def test_a_version_the_gate_cannot_run_on_is_recorded_as_failed(
    platform: LocalPlatform, candidate: Any
) -> None:
    """An ONNX file registered without reference rows: the gate its registration started
    cannot run, the machine records why (a failed result) and ends failed; production refuses
    the version."""
    from ferry_core.onboarding.intake import build_from_onnx

    onnx_only = build_from_onnx(candidate.onnx_bytes, candidate.schema)
    version, execution = _register(platform, onnx_only)
    assert _finished(platform, execution)["status"] == "FAILED"
    result = _gate(platform, version, execution)
    assert result["passed"] is False and "without reference rows" in result["summary"]
    assert _promote(platform, version)[0] == 409
