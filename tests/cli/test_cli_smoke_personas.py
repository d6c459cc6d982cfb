"""`ferry smoke` on a deployed stage acts as the stack's persona roles, assumed by the caller."""

from __future__ import annotations

import os
from unittest.mock import patch

from ferry_cli.environments import Environment
from ferry_cli.smoke_cmds import _assumed_personas
from ferry_local.moto_stack import REGION, create_identities


def test_a_deployed_stage_is_checked_as_each_persona_role_it_names() -> None:
    """
    Given a deployed stage whose outputs name its persona roles, and a caller who may assume them
    When the smoke check prepares its personas
    Then each is a short session of that role named ferry-smoke-<persona>, as CloudTrail shows it
    """
    from moto import mock_aws

    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with patch.dict(os.environ, fake), mock_aws():
        roles = {name: i.role_arn for name, i in create_identities().items()}
        outputs = {
            "Identity" + "".join(p.capitalize() for p in name.split("-")) + "RoleArn": arn
            for name, arn in roles.items()
        }
        env = Environment(name="dev", region=REGION, outputs=outputs)
        personas = _assumed_personas(env)
    assert set(personas) == set(roles) == {"client", "data-scientist", "approver", "admin"}
    for name, identity in personas.items():
        assert identity.role_arn == roles[name]
        assert identity.arn.endswith(f"/ferry-smoke-{name}")
