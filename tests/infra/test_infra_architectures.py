"""Each function's architecture comes from `function_architectures`, and its image is built for
the same one: the function's `Architectures` and its image asset's platform always agree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk import App

from app import feature_flags
from infra.config import ENVIRONMENTS, EnvironmentConfig, FunctionArchitectures
from infra.stack import FerryStack, stack_name

if TYPE_CHECKING:
    from conftest import Synthesis

PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


def _functions(template: dict[str, Any], assets: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Logical id → (Architectures, the platform its image asset is built for)."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        (architecture,) = props["Architectures"]
        image_uri = json.dumps(props["Code"]["ImageUri"])
        (asset_hash,) = re.findall(r":([0-9a-f]{64})\b", image_uri)
        found[logical_id] = (architecture, assets["dockerImages"][asset_hash]["source"]["platform"])
    return found


def _read(outdir: Path, config: EnvironmentConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stack's template and its assets manifest (where each image's platform is)."""
    name = stack_name(config)
    template = json.loads((outdir / f"{name}.template.json").read_text())
    return template, json.loads((outdir / f"{name}.assets.json").read_text())


@pytest.fixture(scope="module")
def arm64_scoring(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """A dev stack whose config switches only the scoring function to arm64 (no cdk-nag)."""
    config = ENVIRONMENTS["dev"].model_copy(
        update={"function_architectures": FunctionArchitectures(scoring="arm64")}
    )
    outdir: Path = tmp_path_factory.mktemp("arm64")
    app = App(outdir=str(outdir), context=feature_flags())
    FerryStack(app, config=config)
    app.synth()
    return _functions(*_read(outdir, config))


def test_a_function_switched_to_arm64_runs_and_is_built_for_arm64(
    arm64_scoring: dict[str, tuple[str, str]],
) -> None:
    """
    Given function_architectures with scoring = "arm64" and every other function on x86_64
    When I synthesize the stack
    Then the scoring function has Architectures [arm64] and an image built for linux/arm64,
         and every other function stays x86_64 with a linux/amd64 image
    """
    scoring = {k: v for k, v in arm64_scoring.items() if k.startswith("ScoringFunction")}
    others = {k: v for k, v in arm64_scoring.items() if k not in scoring}
    assert list(scoring.values()) == [("arm64", "linux/arm64")]
    assert others and set(others.values()) == {("x86_64", "linux/amd64")}


def test_every_function_matches_its_config_in_both_environments(
    synthesis: Synthesis, env: str
) -> None:
    """
    Given the synthesized dev and prod templates and their configs (x86_64 by default)
    When I read each function's architecture and its image asset's platform
    Then both are what function_architectures says, for every function
    """
    config = ENVIRONMENTS[env]
    functions = _functions(*_read(synthesis.outdir, config))
    wanted = set(config.function_architectures.model_dump().values())
    assert len(functions) >= 10
    assert {arch for arch, _ in functions.values()} == wanted
    assert all(platform == PLATFORMS[arch] for arch, platform in functions.values())
