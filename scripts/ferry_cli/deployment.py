"""`ferry deploy`'s work after its preflight: run the pinned CDK CLI on the supported Node, then
turn the stack outputs it writes into `.ferry/{env}.json`.

`.ferry/{env}.json` has the shape of `.ferry/local.json` (DESIGN.md §4): `api_url`,
`aws_endpoint_url` (None: the AWS endpoints), `region`, `stack`, `outputs`. The local file also
holds `identities`, credentials of named local principals; a deployed stage has none, since its
callers act as their own AWS identities, so `environment_document` writes no such key.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

from ferry_cli.preflight import stack_of
from infra.config import EnvironmentConfig
from infra.toolchain import REPO_ROOT, installed_cdk_cli, use_project_node

STATE_DIR = Path(".ferry")
# The CDK CLI's --require-approval: ask before security-broadening changes, never, or always.
Approval = Literal["broadening", "never", "any-change"]


class DeployError(Exception):
    """The deploy did not happen, or left no outputs to record."""


def environment_file(config: EnvironmentConfig, root: Path = REPO_ROOT) -> Path:
    """Where a deployed environment's endpoints go, beside the local platform's local.json."""
    return root / STATE_DIR / f"{config.name}.json"


def cdk_deploy_command(
    config: EnvironmentConfig, node: str, outputs_file: Path, approval: Approval, root: Path
) -> list[str]:
    """The pinned CDK CLI from node_modules, run by `node`, deploying this environment only."""
    installed = installed_cdk_cli(root)
    if installed is None:
        raise DeployError("the pinned CDK CLI is not installed: run `npm ci`")
    return [
        node,
        str(installed[0]),
        "deploy",
        stack_of(config),
        "--exclusively",
        "--outputs-file",
        str(outputs_file),
        "--require-approval",
        approval,
    ]


def run_cdk_deploy(
    config: EnvironmentConfig, node: str, approval: Approval, root: Path = REPO_ROOT
) -> dict[str, str]:
    """Deploy the environment's stack (its output streams to the terminal); its outputs."""
    env = dict(os.environ)
    use_project_node(env)  # the CDK's child processes (python app.py, jsii) run on it too
    with tempfile.TemporaryDirectory(prefix="ferry-deploy-") as work:
        outputs_file = Path(work) / "outputs.json"
        command = cdk_deploy_command(config, node, outputs_file, approval, root)
        done = subprocess.run(command, cwd=root, env=env, check=False)
        if done.returncode != 0:
            raise DeployError(f"cdk deploy {stack_of(config)} failed (exit {done.returncode})")
        return stack_outputs(config, outputs_file)


def stack_outputs(config: EnvironmentConfig, outputs_file: Path) -> dict[str, str]:
    """The stack's outputs from the CDK CLI's `--outputs-file` ({stack: {key: value}})."""
    stack = stack_of(config)
    try:
        outputs = json.loads(outputs_file.read_text())[stack]
    except (OSError, ValueError, KeyError) as exc:
        raise DeployError(f"{outputs_file} holds no outputs of {stack}: {exc}") from exc
    return {str(k): str(v) for k, v in outputs.items()}


def environment_document(config: EnvironmentConfig, outputs: dict[str, str]) -> dict[str, Any]:
    """The `.ferry/{env}.json` document of a deployed stage, shaped like `.ferry/local.json`."""
    return {
        "api_url": outputs.get("ApiUrl"),
        "aws_endpoint_url": None,
        "region": config.region,
        "stack": stack_of(config),
        "outputs": outputs,
    }


def write_environment_file(
    config: EnvironmentConfig, outputs: dict[str, str], root: Path = REPO_ROOT
) -> Path:
    """Write `.ferry/{env}.json` (atomically: a reader never sees half a file)."""
    path = environment_file(config, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(environment_document(config, outputs), indent=2) + "\n")
    partial.replace(path)
    return path
