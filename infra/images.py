"""Container images of the functions: one build context rule for every image.

Each image is built from the repository root because it copies `layers/core` and its lock
file; everything else (a 1 GB .venv, node_modules, cdk.out, tests, ...) is kept out of the
context, so staging stays fast and unrelated edits do not change an image's hash.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_

from infra.config import Architecture

REPO_ROOT = Path(__file__).resolve().parent.parent


def context_exclude(function: str, lock: str = "runtime") -> tuple[str, ...]:
    """Keep only `functions/{function}`, the core and `requirements/{lock}.txt`."""
    return (
        "*",
        f"!functions/{function}",
        "!layers/core",
        f"!requirements/{lock}.txt",
        "**/__pycache__",
        "**/*.pyc",
        "**/.pytest_cache",
        "**/*.egg-info",
        "**/build",
    )


# The platform an image is built for, by the architecture its function runs on.
IMAGE_PLATFORMS: dict[Architecture, ecr_assets.Platform] = {
    "x86_64": ecr_assets.Platform.LINUX_AMD64,
    "arm64": ecr_assets.Platform.LINUX_ARM64,
}


def image_code(
    function: str, architecture: Architecture, lock: str = "runtime", cmd: str | None = None
) -> lambda_.DockerImageCode:
    """The image of `functions/{function}/Dockerfile` built for `architecture`; `cmd` picks
    another handler in it."""
    return lambda_.DockerImageCode.from_image_asset(
        str(REPO_ROOT),
        file=f"functions/{function}/Dockerfile",
        exclude=list(context_exclude(function, lock)),
        ignore_mode=IgnoreMode.DOCKER,
        platform=IMAGE_PLATFORMS[architecture],
        cmd=[cmd] if cmd else None,
    )
