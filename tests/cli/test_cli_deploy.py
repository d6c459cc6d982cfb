"""`ferry deploy`: its preflight (AWS under moto's in-process mock), and the CDK outputs file
turned into `.ferry/{env}.json`. Nothing is deployed: there is no AWS account here.

The image builder and an old or supported Node are executables on a test PATH that answer as
`docker info` and `node -p process.versions.node` do; the supported Node the project really
runs the CDK on is checked too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from ferry_cli.deployment import (
    DeployError,
    cdk_deploy_command,
    stack_outputs,
    write_environment_file,
)
from ferry_cli.main import app
from ferry_cli.preflight import (
    MIN_BOOTSTRAP_VERSION,
    Check,
    check_node,
    preflight,
)
from infra.config import ENVIRONMENTS, EnvironmentConfig
from infra.toolchain import REPO_ROOT, node_executable, pinned_cdk_cli_version

DEV = ENVIRONMENTS["dev"]
MOTO_ACCOUNT = "123456789012"  # the account moto's STS answers with
VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"


def _executable(folder: Path, name: str, script: str) -> str:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    """moto's in-process AWS, and a session in the environment's region."""
    with mock_aws():
        yield boto3.Session(region_name=DEV.region)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project tree whose node_modules holds the CDK CLI version package.json pins."""
    root = tmp_path / "project"
    cli = root / "node_modules" / "aws-cdk"
    cli.mkdir(parents=True)
    for name in ("package.json", "cdk.json"):
        shutil.copy(REPO_ROOT / name, root / name)
    manifest = {"name": "aws-cdk", "version": pinned_cdk_cli_version(), "bin": {"cdk": "bin/cdk"}}
    (cli / "package.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def tools(tmp_path: Path) -> dict[str, str]:
    """A PATH with an answering docker engine, and Node executables of two majors."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir, "docker", '[ "$1" = info ] && echo "Server Version: 27.3.1"')
    return {
        "PATH": str(bin_dir),
        "node22": _executable(tmp_path, "node22", "echo 22.23.5"),
        "node20": _executable(tmp_path, "node20", "echo 20.20.2"),
    }


def _bootstrapped(session: boto3.Session, version: int = 30) -> None:
    ssm = session.client("ssm")
    ssm.put_parameter(Name=VERSION_PARAMETER, Value=str(version), Type="String")


def _run(
    session: boto3.Session,
    tools: dict[str, str],
    project: Path,
    *,
    config: EnvironmentConfig = DEV,
    node: str = "node22",
    path: str | None = None,
) -> dict[str, Check]:
    environ = {"PATH": tools["PATH"] if path is None else path}
    checks = preflight(config, session, node=tools[node], environ=environ, root=project)
    return {c.name: c for c in checks}


def _failed(checks: dict[str, Check]) -> dict[str, str]:
    return {name: c.message for name, c in checks.items() if c.status == "failed"}


def test_a_ready_environment_passes_every_check(aws, tools, project) -> None:
    """
    Given credentials for the environment's region, a bootstrapped account, an answering
        image builder, Node 22 and the pinned CDK CLI installed
    When the preflight runs
    Then every check is ok, and says what it found
    """
    _bootstrapped(aws)
    checks = _run(aws, tools, project)
    assert [c.status for c in checks.values()] == ["ok"] * 7, checks
    assert checks["account"].message == MOTO_ACCOUNT
    assert checks["bootstrap"].message == f"CDKToolkit version 30 in aws://{MOTO_ACCOUNT}/us-east-1"
    assert checks["node"].message.startswith("Node.js 22.23.5")


def test_wrong_account(aws, tools, project) -> None:
    """
    Given an environment whose config names another account than the credentials'
    When the preflight runs
    Then the account check fails naming both accounts, and the bootstrap is not looked for
    """
    _bootstrapped(aws)
    config = DEV.model_copy(update={"account": "111111111111"})
    checks = _run(aws, tools, project, config=config)
    assert _failed(checks) == {
        "account": "the AWS credentials are for account 123456789012, but Ferry-dev deploys to "
        "111111111111 (infra/config.py `account`): use credentials for 111111111111"
    }
    assert checks["bootstrap"].status == "skipped"


def test_wrong_region(tools, project) -> None:
    """Credentials configured for another region than the environment's: the region fails."""
    with mock_aws():
        session = boto3.Session(region_name="eu-west-1")
        _bootstrapped(boto3.Session(region_name=DEV.region))
        checks = _run(session, tools, project)
    assert _failed(checks) == {
        "region": "the AWS region is eu-west-1, but Ferry-dev deploys to us-east-1 "
        "(infra/config.py `region`): set AWS_REGION=us-east-1"
    }


def test_aws_region_names_the_callers_region(aws, tools, project) -> None:
    """AWS_REGION (read by the CDK CLI before AWS_DEFAULT_REGION) is the caller's region."""
    _bootstrapped(aws)
    environ = {"PATH": tools["PATH"], "AWS_REGION": "eu-west-1"}
    checks = preflight(DEV, aws, node=tools["node22"], environ=environ, root=project)
    assert [c.name for c in checks if c.status == "failed"] == ["region"]


def test_missing_bootstrap(aws, tools, project) -> None:
    """
    Given an account and region with neither the CDKToolkit stack nor its version parameter
    When the preflight runs
    Then the bootstrap check fails and says how to bootstrap that account and region
    """
    assert _failed(_run(aws, tools, project)) == {
        "bootstrap": "aws://123456789012/us-east-1 is not bootstrapped for the CDK (no CDKToolkit "
        "stack): run `npx cdk bootstrap aws://123456789012/us-east-1`"
    }


def test_bootstrap_too_old_or_without_its_parameter(aws, tools, project) -> None:
    """An old bootstrap version, and a CDKToolkit stack without the version parameter, fail."""
    _bootstrapped(aws, MIN_BOOTSTRAP_VERSION - 1)
    assert _failed(_run(aws, tools, project))["bootstrap"].startswith(
        f"the CDK bootstrap stack in aws://{MOTO_ACCOUNT}/us-east-1 is version 5; the stack needs "
        "6 or newer: run `npx cdk bootstrap"
    )
    aws.client("ssm").delete_parameter(Name=VERSION_PARAMETER)
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}}}
    aws.client("cloudformation").create_stack(
        StackName="CDKToolkit", TemplateBody=json.dumps(template)
    )
    assert _failed(_run(aws, tools, project))["bootstrap"].startswith(
        f"CDKToolkit in aws://{MOTO_ACCOUNT}/us-east-1 has no version parameter for qualifier "
        "hnb659fds"
    )


def test_no_image_builder(aws, tools, project, tmp_path: Path) -> None:
    """
    Given no docker (nor finch, nor podman) on PATH, then a docker whose engine is down
    When the preflight runs
    Then the image builder check fails, saying why the functions need one
    """
    _bootstrapped(aws)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _failed(_run(aws, tools, project, path=str(empty))) == {
        "image builder": "no container image builder: `docker` is not on PATH and the functions "
        "are container images: install Docker, Finch or Podman"
    }
    down = "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2; exit 1"
    _executable(empty, "docker", down)
    assert _failed(_run(aws, tools, project, path=str(empty))) == {
        "image builder": "the docker engine does not answer (`docker info`: Cannot connect to the "
        "Docker daemon at unix:///var/run/docker.sock.): start it"
    }


def test_old_node(aws, tools, project) -> None:
    """
    Given the CDK would run on Node 20 (past the pinned jsii runtime's support)
    When the preflight runs
    Then the node check fails and points at scripts/bootstrap
    """
    _bootstrapped(aws)
    failed = _failed(_run(aws, tools, project, node="node20"))
    assert list(failed) == ["node"]
    assert failed["node"].startswith(
        f"the CDK would run on Node.js 20.20.2 ({tools['node20']}); the pinned CDK supports "
        "Node.js 22 or newer: run scripts/bootstrap"
    )


def test_every_failure_is_reported_not_only_the_first(aws, tools, tmp_path: Path) -> None:
    """Wrong account, no image builder, old Node and no CDK CLI: four failures in one run."""
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(REPO_ROOT / "package.json", bare / "package.json")
    shutil.copy(REPO_ROOT / "cdk.json", bare / "cdk.json")
    config = DEV.model_copy(update={"account": "111111111111"})
    checks = _run(aws, tools, bare, config=config, node="node20", path=str(bare))
    assert set(_failed(checks)) == {"account", "image builder", "node", "cdk cli"}
    assert _failed(checks)["cdk cli"] == (
        f"the pinned CDK CLI (aws-cdk {pinned_cdk_cli_version()}) is not installed: run `npm ci`"
    )


def test_no_credentials(tools, project, tmp_path: Path, monkeypatch) -> None:
    """No credentials anywhere: the credentials check fails, and what needs them is skipped."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    checks = _run(boto3.Session(region_name=DEV.region), tools, project)
    assert list(_failed(checks)) == ["credentials"]
    assert {checks["account"].status, checks["bootstrap"].status} == {"skipped"}


def test_the_project_runs_the_cdk_on_a_supported_node() -> None:
    """The Node scripts/bootstrap leaves the CDK (system or .cache/node) passes the node check."""
    assert check_node(node_executable()).status == "ok"


def test_check_only_prints_each_failure_on_one_line(aws, tmp_path: Path, monkeypatch) -> None:
    """
    Given an environment with no image builder on PATH and a caller in another region
    When I run `ferry deploy --env dev --check-only`
    Then it exits 1 with one `ferry deploy: …` line per failed check, and deploys nothing
    """
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["deploy", "--env", "dev", "--check-only"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert all(line.startswith("ferry deploy: ") for line in lines), lines
    assert any("the AWS region is eu-west-1" in line for line in lines)
    assert any("no container image builder" in line for line in lines)
    assert "deployed" not in result.stdout


def test_local_is_not_deployed() -> None:
    result = CliRunner().invoke(app, ["deploy", "--env", "local"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "ferry deploy: --env must be dev or prod (the local platform is `ferry local up`)"
    )


def test_outputs_file_becomes_the_environment_file(tmp_path: Path) -> None:
    """
    Given the outputs file `cdk deploy --outputs-file` writes for Ferry-dev
    When it is turned into .ferry/dev.json
    Then the file has local.json's shape: the API URL, no AWS endpoint override (AWS's own),
         the region, the stack and every output (no local identities)
    """
    outputs = {
        "ApiUrl": "https://a1b2c3.execute-api.us-east-1.amazonaws.com/",
        "ModelBucketName": "ferry-dev-models-1a2b",
        "RegistryTableName": "Ferry-dev-Registry-XYZ",
    }
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps({"Ferry-dev": outputs}))
    path = write_environment_file(DEV, stack_outputs(DEV, outputs_file), tmp_path)
    assert path == tmp_path / ".ferry" / "dev.json"
    assert json.loads(path.read_text()) == {
        "api_url": outputs["ApiUrl"],
        "aws_endpoint_url": None,
        "region": "us-east-1",
        "stack": "Ferry-dev",
        "outputs": outputs,
    }


def test_outputs_file_without_the_stack_is_an_error(tmp_path: Path) -> None:
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps({"Ferry-prod": {}}))
    with pytest.raises(DeployError, match="holds no outputs of Ferry-dev"):
        stack_outputs(DEV, outputs_file)


def test_the_pinned_cli_deploys_the_environment_alone(project: Path, tmp_path: Path) -> None:
    """The command runs node_modules' CDK CLI on the given Node, for this stack only."""
    command = cdk_deploy_command(DEV, "/opt/node22/bin/node", tmp_path / "o.json", "never", project)
    assert command == [
        "/opt/node22/bin/node",
        str(project / "node_modules" / "aws-cdk" / "bin" / "cdk"),
        "deploy",
        "Ferry-dev",
        "--exclusively",
        "--outputs-file",
        str(tmp_path / "o.json"),
        "--require-approval",
        "never",
    ]
