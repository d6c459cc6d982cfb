"""`ferry deploy`'s preflight reads the CDK bootstrap where the synthesized assembly says the CDK
will, and asks for at least the version the assembly requires."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ferry_cli.preflight import MIN_BOOTSTRAP_VERSION, bootstrap_qualifier
from infra.config import ENVIRONMENTS
from infra.stack import stack_name

if TYPE_CHECKING:
    from conftest import Synthesis


def test_preflight_checks_the_bootstrap_the_assembly_requires(synthesis: Synthesis) -> None:
    """
    Given the synthesized assembly of Ferry-dev and Ferry-prod
    When I read each stack's and asset manifest's bootstrap requirement
    Then it names the version parameter the preflight reads, at a version it accepts
    """
    manifest = json.loads((synthesis.outdir / "manifest.json").read_text())
    parameter = f"/cdk-bootstrap/{bootstrap_qualifier()}/version"
    for config in ENVIRONMENTS.values():
        for artifact in (stack_name(config), f"{stack_name(config)}.assets"):
            props = manifest["artifacts"][artifact]["properties"]
            assert props["bootstrapStackVersionSsmParameter"] == parameter
            assert props["requiresBootstrapStackVersion"] <= MIN_BOOTSTRAP_VERSION
