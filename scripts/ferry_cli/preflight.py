"""What `ferry deploy` checks before it deploys anything; every check runs, so one run lists all
that must be fixed, each with a one-line reason.

- credentials, account, region: AWS credentials resolve and STS GetCallerIdentity answers; the
  caller's account is the environment's `account` (infra/config.py; None accepts any) and the
  region the caller's configuration names is the environment's `region`.
- bootstrap: the CDK bootstrap stack in that account and region, read where the CDK reads it:
  the SSM parameter `/cdk-bootstrap/{qualifier}/version`, which the template's
  CheckBootstrapVersion rule and the asset manifests name (at least `MIN_BOOTSTRAP_VERSION`);
  without it, the `CDKToolkit` stack tells "never bootstrapped" from "bootstrapped otherwise".
- image builder: the engine the CDK builds the functions' container images with (`CDK_DOCKER`,
  docker by default; finch or podman) answers `info`.
- node, cdk cli: the CDK runs on a Node.js it supports, and node_modules holds the exact CDK CLI
  package.json pins (infra/toolchain.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from infra.config import EnvironmentConfig
from infra.toolchain import (
    MIN_NODE_MAJOR,
    REPO_ROOT,
    installed_cdk_cli,
    node_version,
    pinned_cdk_cli_version,
)

# The bootstrap version the DefaultStackSynthesizer's templates and asset manifests require
# (tests/infra/test_infra_bootstrap.py reads it from the synthesized assembly).
MIN_BOOTSTRAP_VERSION = 6
DEFAULT_QUALIFIER = "hnb659fds"
TOOLKIT_STACK = "CDKToolkit"
IMAGE_BUILDERS = ("docker", "finch", "podman")

Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Check:
    """One preflight check: its name, how it went, and what it found or what is wrong."""

    name: str
    status: Status
    message: str


def stack_of(config: EnvironmentConfig) -> str:
    """The environment's stack name (infra/stack.py names stacks the same way)."""
    return f"Ferry-{config.name}"


def bootstrap_qualifier(root: Path = REPO_ROOT) -> str:
    """The bootstrap qualifier the app synthesizes for (cdk.json may set another)."""
    context = json.loads((root / "cdk.json").read_text()).get("context", {})
    return context.get("@aws-cdk/core:bootstrapQualifier", DEFAULT_QUALIFIER)


def check_caller(
    config: EnvironmentConfig, session: Any, environ: Mapping[str, str] = os.environ
) -> tuple[list[Check], str | None]:
    """Credentials, account and region checks, and the caller's account when it is known.

    The caller's region is AWS_REGION, which the CDK CLI reads first, else boto3's (its
    AWS_DEFAULT_REGION or the profile's)."""
    stack = stack_of(config)
    region = environ.get("AWS_REGION") or session.region_name
    if region == config.region:
        region_check = Check("region", "ok", region)
    else:
        region_check = Check(
            "region",
            "failed",
            f"the AWS region is {region or 'not set'}, but {stack} deploys to {config.region} "
            f"(infra/config.py `region`): set AWS_REGION={config.region}",
        )
    if session.get_credentials() is None:
        missing = (
            "no AWS credentials found: configure a profile (aws configure, AWS_PROFILE) or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
        skipped = Check("account", "skipped", "not checked: no AWS credentials")
        return [Check("credentials", "failed", missing), skipped, region_check], None
    try:
        sts = session.client("sts", region_name=config.region)
        identity = sts.get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        refused = f"the AWS credentials do not work (STS GetCallerIdentity: {exc})"
        skipped = Check("account", "skipped", "not checked: the credentials do not work")
        return [Check("credentials", "failed", refused), skipped, region_check], None
    account = identity["Account"]
    if config.account is None or account == config.account:
        account_check = Check("account", "ok", account)
    else:
        account_check = Check(
            "account",
            "failed",
            f"the AWS credentials are for account {account}, but {stack} deploys to "
            f"{config.account} (infra/config.py `account`): use credentials for {config.account}",
        )
    return [Check("credentials", "ok", identity["Arn"]), account_check, region_check], account


def check_bootstrap(
    config: EnvironmentConfig, session: Any, account: str, qualifier: str = DEFAULT_QUALIFIER
) -> Check:
    """The CDK bootstrap stack in `account` and the environment's region, at a version we need."""
    target = f"aws://{account}/{config.region}"
    parameter = f"/cdk-bootstrap/{qualifier}/version"
    fix = f"run `npx cdk bootstrap {target}`"
    try:
        ssm = session.client("ssm", region_name=config.region)
        version = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ParameterNotFound":
            return Check("bootstrap", "failed", f"cannot read {parameter} in {target}: {exc}")
        return Check("bootstrap", "failed", _missing_bootstrap(session, config, target, fix))
    except BotoCoreError as exc:
        return Check("bootstrap", "failed", f"cannot read {parameter} in {target}: {exc}")
    if not version.isdigit() or int(version) < MIN_BOOTSTRAP_VERSION:
        return Check(
            "bootstrap",
            "failed",
            f"the CDK bootstrap stack in {target} is version {version}; the stack needs "
            f"{MIN_BOOTSTRAP_VERSION} or newer: {fix}",
        )
    return Check("bootstrap", "ok", f"{TOOLKIT_STACK} version {version} in {target}")


def _missing_bootstrap(session: Any, config: EnvironmentConfig, target: str, fix: str) -> str:
    """Why there is no version parameter: no bootstrap at all, or one the CDK cannot use."""
    try:
        cfn = session.client("cloudformation", region_name=config.region)
        cfn.describe_stacks(StackName=TOOLKIT_STACK)
    except ClientError:
        return f"{target} is not bootstrapped for the CDK (no {TOOLKIT_STACK} stack): {fix}"
    except BotoCoreError as exc:
        return f"cannot look for the {TOOLKIT_STACK} stack in {target}: {exc}"
    return (
        f"{TOOLKIT_STACK} in {target} has no version parameter for qualifier "
        f"{bootstrap_qualifier()} (another qualifier, or a legacy bootstrap): {fix}"
    )


def check_image_builder(environ: Mapping[str, str] = os.environ) -> Check:
    """The container engine the CDK builds images with is installed and its engine answers."""
    engine = environ.get("CDK_DOCKER", "docker")
    path = environ.get("PATH")
    executable = shutil.which(engine, path=path)
    if executable is None:
        others = [e for e in IMAGE_BUILDERS if e != engine and shutil.which(e, path=path)]
        hint = f"set CDK_DOCKER={others[0]}" if others else "install Docker, Finch or Podman"
        return Check(
            "image builder",
            "failed",
            f"no container image builder: `{engine}` is not on PATH and the functions are "
            f"container images: {hint}",
        )
    try:
        done = subprocess.run(
            [executable, "info"], capture_output=True, text=True, timeout=30, env=dict(environ)
        )
    except subprocess.TimeoutExpired:
        return Check("image builder", "failed", f"`{engine} info` did not answer in 30 s")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        return Check(
            "image builder",
            "failed",
            f"the {engine} engine does not answer (`{engine} info`: {why}): start it",
        )
    return Check("image builder", "ok", f"{engine} ({executable}) answers")


def check_node(node: str | None) -> Check:
    """The Node the CDK runs on is one the pinned CDK supports."""
    fix = (
        f"run scripts/bootstrap (it installs the pinned Node.js {MIN_NODE_MAJOR} into "
        ".cache/node when the system's is older)"
    )
    if node is None:
        return Check("node", "failed", f"no Node.js for the CDK: {fix}")
    version = node_version(node)
    if version is None:
        return Check("node", "failed", f"{node} does not run: {fix}")
    if int(version.split(".")[0]) < MIN_NODE_MAJOR:
        return Check(
            "node",
            "failed",
            f"the CDK would run on Node.js {version} ({node}); the pinned CDK supports Node.js "
            f"{MIN_NODE_MAJOR} or newer: {fix}",
        )
    return Check("node", "ok", f"Node.js {version} ({node})")


def check_cdk_cli(root: Path = REPO_ROOT) -> Check:
    """node_modules holds the CDK CLI version package.json pins."""
    want = pinned_cdk_cli_version(root)
    installed = installed_cdk_cli(root)
    if installed is None:
        missing = f"the pinned CDK CLI (aws-cdk {want}) is not installed: run `npm ci`"
        return Check("cdk cli", "failed", missing)
    if installed[1] != want:
        return Check(
            "cdk cli",
            "failed",
            f"node_modules holds aws-cdk {installed[1]}, package.json pins {want}: run `npm ci`",
        )
    return Check("cdk cli", "ok", f"aws-cdk {want}")


def preflight(
    config: EnvironmentConfig,
    session: Any,
    *,
    node: str | None,
    environ: Mapping[str, str] = os.environ,
    root: Path = REPO_ROOT,
) -> list[Check]:
    """Every check, in order; none is left out because another failed."""
    checks, account = check_caller(config, session, environ)
    if account is None:
        checks.append(Check("bootstrap", "skipped", "not checked: no working AWS credentials"))
    elif config.account not in (None, account):
        other = f"not checked: account {account} is not the target"
        checks.append(Check("bootstrap", "skipped", other))
    else:
        checks.append(check_bootstrap(config, session, account, bootstrap_qualifier(root)))
    checks += [check_image_builder(environ), check_node(node), check_cdk_cli(root)]
    return checks
