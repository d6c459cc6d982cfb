"""The local platform's identities: one per persona role of the stack, used by `ferry --as`."""

from __future__ import annotations

import json
from typing import Any

from ferry_local.identities import load_identities, persona_name


def test_persona_names_come_from_the_role_outputs() -> None:
    assert persona_name("IdentityDataScientistRoleArn") == "data-scientist"
    assert persona_name("IdentityClientRoleArn") == "client"
    assert persona_name("ModelBucketName") is None
    assert persona_name("IdentityRoleArnExtra") is None


def test_local_json_holds_an_assumed_role_session_per_persona(local_platform: Any) -> None:
    """
    Given the running local platform
    When I read the identities of its local.json and ask STS who each one is
    Then there is one per persona role in the stack's outputs, and each is a session of
        exactly that role, named after the persona
    """
    identities = load_identities(json.loads((local_platform.state_dir / "local.json").read_text()))
    assert set(identities) == {"client", "data-scientist", "approver", "admin"}
    for name, identity in identities.items():
        key = "Identity" + "".join(p.capitalize() for p in name.split("-")) + "RoleArn"
        assert identity.role_arn == local_platform.outputs[key]
        caller = local_platform.client("sts", name).get_caller_identity()
        role_name = identity.role_arn.rsplit("/", 1)[1]
        assert caller["Arn"] == identity.arn
        assert caller["Arn"].endswith(f":assumed-role/{role_name}/{name}")


def test_ferry_acts_as_the_identity_it_is_told(local_platform: Any, run_ferry: Any) -> None:
    ok = run_ferry(local_platform, "--as", "approver", "models", "--json")
    assert ok.returncode == 0, ok.stderr
    unknown = run_ferry(local_platform, "--as", "nobody", "models")
    assert unknown.returncode == 1
    assert "no local identity 'nobody'" in unknown.stderr
    assert "admin, approver, client, data-scientist" in unknown.stderr
