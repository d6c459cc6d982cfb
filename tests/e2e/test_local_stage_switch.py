"""A stage change reaches a warm scoring container in seconds, whatever its pointer cache.

Runs `LocalPlatform` in this process (its privileged clients set the scoring function's
environment, as `aws lambda update-function-configuration` would). The scoring function
keeps a stage pointer for `REGISTRY_CACHE_SECONDS` (30 s here, as in prod) and re-reads it in
the background every `REGISTRY_REFRESH_SECONDS` (what the stack sets): a rollback through
governance is answered by the same warm container within 2 s. The bound is the product's
promise (polled with a deadline), not a measurement of how fast this machine is.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry_local.platform import LocalPlatform
from ferry_local.signing import credentials_of, sign

MODEL = "credit-risk"
SWITCH_BOUND_S = 2.0
CACHE_SECONDS = "30"


def _predict(platform: LocalPlatform, model: str, instance: dict[str, Any]) -> int:
    """The version that answered one prediction, signed as the `client` identity."""
    url = f"{platform.api_url}/v1/models/{model}/predict"
    body = json.dumps({"instances": [instance]}).encode()
    headers = sign(
        "POST", url, credentials_of(platform.identity("client")), platform.region, body=body
    )
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as resp:
        return int(json.loads(resp.read())["version"])


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with LocalPlatform(state_dir=tmp_path_factory.mktemp("switch"), restore=False) as p:
        yield p


@pytest.fixture(scope="module")
def instance() -> dict[str, Any]:
    from ferry_core.onboarding.builder import CREDIT_RISK_SCHEMA, generate_credit_data, records

    return records(generate_credit_data(1, seed=2024), CREDIT_RISK_SCHEMA)[0]


def _scoring_environment(platform: LocalPlatform, **changes: str) -> dict[str, str]:
    """Set variables of the scoring function (its next invocation is a new container)."""
    lam, name = platform.clients["lambda"], platform.outputs["ScoringFunctionName"]
    variables = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    variables |= changes
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    return variables  # type: ignore[no-any-return]


def _governance(platform: LocalPlatform, cache: str) -> Any:
    """The core's `Governance` on the platform's tables (privileged clients)."""
    from ferry_core.registry.governance import connect

    assert platform.clients is not None
    outputs = platform.outputs
    return connect(
        dynamodb=platform.clients["dynamodb"],
        s3=platform.clients["s3"],
        events=platform.clients["events"],
        registry_table=outputs["RegistryTableName"],
        audit_table=outputs["AuditTableName"],
        anchor_bucket=outputs.get("AuditAnchorBucketName"),
        cache_dir=cache,
        env="local",
    )


def _rollback_seen_by_warm_container(
    platform: LocalPlatform, built: Any, instance: dict[str, Any], model: str, gate_pass: Any
) -> tuple[list[int], float, int]:
    """`model` v1 then v2 in production, a warm container answering v2, a rollback to v1;
    the versions the same container answered for up to 2 s after it, when v1 came, and the
    container's process id."""
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register

    assert platform.clients is not None and platform.runtime is not None
    function = platform.outputs["ScoringFunctionName"]
    with tempfile.TemporaryDirectory() as cache:
        gov = _governance(platform, cache)
        bucket = platform.outputs["ModelBucketName"]
        for _ in range(2):
            register(built, model, platform.clients["s3"], bucket, gov, Lineage(), "e2e")
        for version in (1, 2):  # the subject is the switch, not the gate: a recorded pass
            gate_pass(gov, model, version)
            assert gov.promote(model, version, actor="e2e").warnings == []
        assert _predict(platform, model, instance) == 2  # cold start, then warm
        pid = platform.runtime.worker_pid(function)
        assert pid is not None and _predict(platform, model, instance) == 2

        started = time.monotonic()
        rolled = gov.rollback(model, actor="e2e", reason="v2 misbehaves")
        assert (rolled.version, rolled.warnings) == (1, [])
        answers: list[int] = []
        while time.monotonic() - started < SWITCH_BOUND_S:
            answers.append(_predict(platform, model, instance))
            if answers[-1] == 1:
                break
            time.sleep(0.05)
        seen_after = time.monotonic() - started
    assert platform.runtime.worker_pid(function) == pid, "another container answered"
    assert answers and set(answers) <= {1, 2}
    return answers, seen_after, pid


@pytest.mark.parametrize("frozen", [False, True], ids=["running", "frozen-between-requests"])
def test_a_rollback_reaches_a_warm_container_within_two_seconds(
    platform: LocalPlatform,
    built: Any,
    instance: dict[str, Any],
    frozen: bool,
    gate_pass: Any,
) -> None:
    """Given the scoring function with a 30 s pointer cache and the refresh the stack sets,
    a warm container answering with v2, when production rolls back to v1 through governance,
    then within 2 s the same container (same process) answers with v1 — also when the
    container is frozen between invocations, as Lambda freezes it (its refresh thread then
    runs only while a request is handled)."""
    assert platform.runtime is not None
    variables = _scoring_environment(platform, REGISTRY_CACHE_SECONDS=CACHE_SECONDS)
    assert float(variables["REGISTRY_REFRESH_SECONDS"]) <= 1.0  # as the stack sets it
    platform.runtime.freeze_between_invocations = frozen
    try:
        answers, seen_after, pid = _rollback_seen_by_warm_container(
            platform, built, instance, f"{MODEL}-{'frozen' if frozen else 'running'}", gate_pass
        )
        stat = Path(f"/proc/{pid}/stat")
        if frozen and stat.exists():  # Linux: the container is stopped between requests
            assert stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    finally:
        platform.runtime.freeze_between_invocations = False
    assert answers[-1] == 1, (
        f"the warm container still answered v{answers[-1]} {seen_after:.2f} s after the "
        f"rollback ({len(answers)} requests)"
    )
    print(f"rollback seen by the warm container after {seen_after:.2f} s")


def test_without_the_refresh_the_cache_alone_holds_the_old_pointer(
    platform: LocalPlatform, built: Any, instance: dict[str, Any], gate_pass: Any
) -> None:
    """Given the same 30 s cache with the refresh switched off, then the warm container keeps
    answering v2 for the whole 2 s: the refresh, not the cache, brings the rollback in."""
    _scoring_environment(
        platform, REGISTRY_CACHE_SECONDS=CACHE_SECONDS, REGISTRY_REFRESH_SECONDS="0"
    )
    answers, _, _ = _rollback_seen_by_warm_container(
        platform, built, instance, "credit-risk-b", gate_pass
    )
    assert set(answers) == {2}
