#!/usr/bin/env python3
"""CDK entry point: one FerryStack per environment in infra/config.py, checked by cdk-nag.

With `PIPELINE` set in infra/config.py the app also holds the release pipeline's stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.toolchain import use_project_node

_ROOT = Path(__file__).resolve().parent
# Before aws_cdk is imported: jsii reads its Node and package cache when its runtime starts.
use_project_node()

import aws_cdk as cdk  # noqa: E402

from infra.config import ENVIRONMENTS, PIPELINE, EnvironmentConfig, PipelineConfig  # noqa: E402
from infra.nag import add_nag_checks  # noqa: E402
from infra.source import source_context  # noqa: E402
from infra.stack import FerryStack  # noqa: E402


def feature_flags() -> dict[str, Any]:
    """The feature flags in cdk.json, so `cdk synth` and a direct `build_app()` agree."""
    return json.loads((_ROOT / "cdk.json").read_text())["context"]


def build_app(
    outdir: str | os.PathLike[str] | None = None,
    *,
    environments: Mapping[str, EnvironmentConfig] = ENVIRONMENTS,
    pipeline: PipelineConfig | None = PIPELINE,
) -> cdk.App:
    """Build (not synthesize) the app: Ferry-dev and Ferry-prod, with cdk-nag as a validation.

    `outdir` defaults to the CLI's CDK_OUTDIR, else `cdk.out`. Tests pass a temporary folder,
    and other environments or a pipeline to check them the way the shipped ones are checked.
    The pipeline module (and CDK Pipelines) is imported only when a pipeline is configured.
    """
    if outdir is None:
        outdir = os.environ.get("CDK_OUTDIR", "cdk.out")
    # One source revision for every stack of this synthesis (lineage of retrained versions).
    app = cdk.App(outdir=str(outdir), context={**feature_flags(), **source_context(_ROOT)})
    for config in environments.values():
        FerryStack(app, config=config)
    if pipeline is not None:
        from infra.pipeline import FerryPipelineStack

        FerryPipelineStack(app, pipeline=pipeline, environments=environments)
    add_nag_checks(app)
    return app


if __name__ == "__main__":
    build_app().synth()
