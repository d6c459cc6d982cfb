#!/usr/bin/env python3
"""CDK entry point: one FerryStack per environment in infra/config.py, checked by cdk-nag."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from infra.toolchain import use_project_node

_ROOT = Path(__file__).resolve().parent
# Before aws_cdk is imported: jsii reads its Node and package cache when its runtime starts.
use_project_node()

import aws_cdk as cdk  # noqa: E402

from infra.config import ENVIRONMENTS  # noqa: E402
from infra.nag import add_nag_checks  # noqa: E402
from infra.stack import FerryStack  # noqa: E402


def feature_flags() -> dict[str, Any]:
    """The feature flags in cdk.json, so `cdk synth` and a direct `build_app()` agree."""
    return json.loads((_ROOT / "cdk.json").read_text())["context"]


def build_app(outdir: str | os.PathLike[str] | None = None) -> cdk.App:
    """Build (not synthesize) the app: Ferry-dev and Ferry-prod, with cdk-nag as a validation.

    `outdir` defaults to the CLI's CDK_OUTDIR, else `cdk.out`. Tests pass a temporary folder.
    """
    if outdir is None:
        outdir = os.environ.get("CDK_OUTDIR", "cdk.out")
    app = cdk.App(outdir=str(outdir), context=feature_flags())
    for config in ENVIRONMENTS.values():
        FerryStack(app, config=config)
    add_nag_checks(app)
    return app


if __name__ == "__main__":
    build_app().synth()
