"""Synthesize the real app (app.build_app) once per session and share the results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.toolchain import use_project_node

REPO_ROOT = Path(__file__).resolve().parents[2]
# Before anything imports aws_cdk (jsii reads its Node and package cache when it starts).
use_project_node()

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from app import build_app  # noqa: E402
from infra.config import ENVIRONMENTS  # noqa: E402
from infra.stack import stack_name  # noqa: E402


@dataclass(frozen=True)
class Synthesis:
    """What one `cdk synth` of the whole app produced, including a failed validation."""

    app: App
    outdir: Path
    templates: dict[str, dict[str, Any]]  # by environment name
    validation_error: str | None  # set when cdk-nag (or another validation) failed synth
    validation_report: dict[str, Any]

    def template_path(self, env: str) -> Path:
        return self.outdir / f"{stack_name(ENVIRONMENTS[env])}.template.json"


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesis]:
    """Synthesize Ferry-dev and Ferry-prod once; templates are written even if cdk-nag fails."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir)
    error: str | None = None
    try:
        app.synth()
    except RuntimeError as exc:  # jsii surfaces ValidationFailed as RuntimeError
        error = str(exc)
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    templates = {
        env: json.loads((outdir / f"{stack_name(config)}.template.json").read_text())
        for env, config in ENVIRONMENTS.items()
    }
    yield Synthesis(app, outdir, templates, error, report)


@pytest.fixture(params=sorted(ENVIRONMENTS))
def env(request: pytest.FixtureRequest) -> str:
    """Each environment in turn: every structural assertion must hold in dev and in prod."""
    return request.param


@pytest.fixture
def template_json(synthesis: Synthesis, env: str) -> dict[str, Any]:
    return synthesis.templates[env]


@pytest.fixture
def template(template_json: dict[str, Any]) -> Template:
    return Template.from_json(template_json)
