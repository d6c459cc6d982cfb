"""Governance through the platform: the governance routes of the local HTTP API, IAM enforced,
each step signed by a different person (the platform's local identities)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from ferry_core.audit.chain import AuditLog
from ferry_core.card import Lineage
from ferry_core.registry.policies import wait_for_gate
from ferry_core.registry.reader import RegistryReader
from ferry_core.registry.table import key
from ferry_core.retrain.candidate import write_bundle
from ferry_core.retrain.manual import manual_run_id
from tests.e2e.conftest import RunningPlatform

MODEL = "governed-credit"


def _arn(platform: RunningPlatform, identity: str) -> str:
    return platform.client("sts", identity).get_caller_identity()["Arn"]


def _audit(platform: RunningPlatform) -> AuditLog:
    return AuditLog(platform.client("dynamodb", "admin"), platform.outputs["AuditTableName"])


def _post(platform: RunningPlatform, route: str, body: Any, identity: str) -> tuple[int, Any]:
    status, _, answer = platform.request("POST", f"/v1/governance/{route}", body, identity=identity)
    return status, answer


def test_the_data_scientist_registers_the_approver_approves_and_promotes(
    local_platform: RunningPlatform, candidate: Any
) -> None:
    """
    Given the data scientist's candidate bundle under candidates/
    When the data scientist registers it, tries to write the registry table directly and to
        promote it to production, and the approver then approves and promotes it
    Then registration is recorded as the data scientist, the direct write is AccessDenied by
        enforced IAM, the promotion is a 403 from the API's IAM, and the approval and the
        promotion are recorded as the approver: the audit shows both verified principal ARNs
    """
    platform = local_platform
    scientist, approver = _arn(platform, "data-scientist"), _arn(platform, "approver")
    run_id = manual_run_id()
    s3 = platform.client("s3", "data-scientist")
    write_bundle(s3, platform.outputs["ModelBucketName"], candidate, MODEL, run_id, Lineage())

    status, registered = _post(
        platform, "register", {"model": MODEL, "candidate": run_id}, "data-scientist"
    )
    assert status == 200 and registered["ok"], registered
    version = registered["version"]
    reader = RegistryReader(
        platform.client("dynamodb", "admin"),
        platform.outputs["RegistryTableName"],
        pointer_ttl_seconds=0,
    )  # the gate the registration started (as the registrant) runs before anyone decides
    gate = wait_for_gate(reader, MODEL, version, registered["execution"])
    assert gate is not None and gate["passed"] is True, gate

    with pytest.raises(ClientError) as denied:
        platform.client("dynamodb", "data-scientist").put_item(
            TableName=platform.outputs["RegistryTableName"],
            Item={**key(MODEL, "stage#production"), "version": {"N": "1"}},
        )
    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException")

    body = {"model": MODEL, "version": version, "reason": "ship it"}
    status, refused = _post(platform, "promote/production", body, "data-scientist")
    assert status == 403, refused
    assert "error" not in refused  # API Gateway's own refusal: the function never ran

    status, approved = _post(platform, "approve", {"model": MODEL, "version": version}, "approver")
    assert status == 200 and approved["after"] == {"status": "approved"}, approved
    status, promoted = _post(platform, "promote/production", body, "approver")
    assert status == 200 and promoted["after"] == {"production": version}, promoted

    entries = [(e.event, e.actor) for e in _audit(platform).entries(MODEL)]
    assert entries == [
        ("register", scientist),
        ("validate", scientist),
        ("approve", approver),
        ("promote", approver),
    ]
    assert scientist != approver and scientist.startswith("arn:aws:sts::")
    assert _audit(platform).verify(MODEL).ok


def test_a_body_actor_is_refused_and_never_recorded(
    local_platform: RunningPlatform, built: Any
) -> None:
    """
    Given a registered version
    When the approver sends an approval naming another actor in the body
    Then it is a 400 naming `actor`, nothing is recorded, and the audit has no forged name
    """
    platform = local_platform
    model = f"{MODEL}-forged"
    run_id = manual_run_id()
    s3 = platform.client("s3", "data-scientist")
    write_bundle(s3, platform.outputs["ModelBucketName"], built, model, run_id, Lineage())
    status, registered = _post(
        platform, "register", {"model": model, "candidate": run_id}, "data-scientist"
    )
    assert status == 200, registered
    forged = {"model": model, "version": registered["version"], "actor": "mallory"}
    status, refused = _post(platform, "approve", forged, "approver")
    assert status == 400 and refused["error"] == "bad_request", refused
    assert "actor" in refused["message"]
    entries = _audit(platform).entries(model)
    assert [e.event for e in entries] == ["register"]
    assert all("mallory" not in e.actor for e in entries)


def test_governance_routes_refuse_unsigned_calls(local_platform: RunningPlatform) -> None:
    """Governance routes are IAM-authorized: an unsigned call never reaches the function."""
    status, _, answer = local_platform.request(
        "POST", "/v1/governance/archive", {"model": MODEL, "version": 1}, identity=None
    )
    assert status == 403, answer
