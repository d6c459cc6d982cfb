"""`ferry`'s reading commands (`models`, `show`, `audit`, `audit verify`) against a moto server on
127.0.0.1 described by `.ferry/local.json`, and against a "deployed" stack resolved through
CloudFormation. The registry and audit trail are seeded through the core, as the governance
function writes them; the changing commands, which go through the governance API, are tested
against the whole local platform (tests/e2e/test_cli_governance_routes.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

from ferry_cli.main import app
from ferry_core.card import Lineage
from ferry_core.registry.registration import register
from ferry_local import moto_hooks
from ferry_local.moto_stack import StackResources, create_identities, create_resources

MODEL = "credit-risk"
ALICE = "arn:aws:sts::123456789012:assumed-role/Ferry-local-DataScientist/alice"
OUTPUTS = {
    "ModelBucketName": "model_bucket",
    "DataBucketName": "data_bucket",
    "RegistryTableName": "registry_table",
    "AuditTableName": "audit_table",
    "AuditAnchorBucketName": "anchor_bucket",
}


@dataclass
class Local:
    url: str
    res: StackResources

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.url)


@pytest.fixture
def local(tmp_path, monkeypatch) -> Iterator[Local]:
    """A moto server on a free port with Ferry's resources, `local.json` pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    requests.post(f"{url}/moto-api/reset", timeout=10)  # moto's state is process-global
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    res = create_resources()
    identities = {name: i.to_json() for name, i in create_identities().items()}
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = {
        "api_url": url,
        "aws_endpoint_url": url,
        "region": "us-east-1",
        "stack": "Ferry-local",
        "outputs": {key: getattr(res, attr) for key, attr in OUTPUTS.items()},
    }
    config["identities"] = identities
    (tmp_path / "local.json").write_text(json.dumps(config))
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(tmp_path / "local.json"))
    with moto_hooks.installed():
        yield Local(url, res)
    requests.post(f"{url}/moto-api/reset", timeout=10)
    server.stop()


def ferry(*args: str, ok: bool = True) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def ferry_json(*args: str) -> Any:
    return json.loads(ferry(*args, "--json").stdout)


def _seed(
    clients: dict[str, Any], res: StackResources, built: Any, tmp_path: Path, gate_pass: Any
) -> None:
    """v1 and v2 registered, gated and promoted in turn, written as the governance function
    writes them (the core, on moto)."""
    from ferry_core.registry.governance import connect

    gov = connect(
        dynamodb=clients["dynamodb"],
        s3=clients["s3"],
        events=None,
        registry_table=res.registry_table,
        audit_table=res.audit_table,
        anchor_bucket=res.anchor_bucket,
        cache_dir=str(tmp_path / "seed-cache"),
    )
    for _ in range(2):
        register(built, MODEL, clients["s3"], res.model_bucket, gov, Lineage(), ALICE)
    for version in (1, 2):
        gate_pass(gov, MODEL, version)
        gov.promote(MODEL, version, actor=ALICE, reason="release")


def _clients(local: Local) -> dict[str, Any]:
    return {service: local.client(service) for service in ("dynamodb", "s3")}


def test_models_show_and_audit_read_what_governance_wrote(
    local: Local, built: Any, tmp_path: Path, gate_pass: Any
) -> None:
    _seed(_clients(local), local.res, built, tmp_path, gate_pass)
    assert ferry_json("models")["models"] == [
        {"name": MODEL, "stages": {"production": 2, "staging": None}, "latest_version": 2}
    ]
    shown = ferry_json("show", MODEL)
    assert [(h["version"], h["event"]) for h in shown["history"]["production"]] == [
        (1, "promote"),
        (2, "promote"),
    ]
    trail = ferry_json("audit", MODEL)
    assert [(e["event"], e["actor"]) for e in trail] == [
        ("register", ALICE),
        ("register", ALICE),
        ("validate", "tests"),
        ("promote", ALICE),
        ("validate", "tests"),
        ("promote", ALICE),
    ]
    (report,) = ferry_json("audit", "verify", MODEL)
    assert report["ok"] and report["anchors"] == 6
    assert "production history" in ferry("show", MODEL).stdout


def test_audit_verify_names_a_deleted_entry(
    local: Local, built: Any, tmp_path: Path, gate_pass: Any
) -> None:
    _seed(_clients(local), local.res, built, tmp_path, gate_pass)
    local.client("dynamodb").delete_item(
        TableName=local.res.audit_table, Key={"model": {"S": MODEL}, "seq": {"N": "1"}}
    )
    result = ferry("audit", "verify", ok=False)
    assert result.exit_code == 1
    assert (
        result.stderr
        == "ferry audit verify: entry 1 of credit-risk is missing (next present is 2)\n"
    )


def test_local_env_without_a_running_platform(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FERRY_LOCAL_CONFIG", str(tmp_path / "absent.json"))
    result = ferry("models", ok=False)
    assert result.exit_code == 1 and "start it with `ferry local up`" in result.stderr


def test_deployed_env_resolves_outputs_from_cloudformation(
    aws, boto, built, tmp_path, gate_pass
) -> None:
    """Given a stack Ferry-dev whose outputs name the tables and buckets, `--env dev` finds them
    through describe_stacks and reads the same way; a change needs the stack's API (here the
    outputs name none, and the command says so in one line)."""
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": getattr(aws, attr)} for key, attr in OUTPUTS.items()},
    }
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="Ferry-dev", TemplateBody=json.dumps(template)
    )
    _seed(boto, aws, built, tmp_path, gate_pass)
    assert ferry_json("models", "--env", "dev")["models"][0]["stages"]["production"] == 2
    assert {e["actor"] for e in ferry_json("audit", MODEL, "--env", "dev")} == {ALICE, "tests"}
    change = ferry("promote", MODEL, "1", "--env", "dev", ok=False)
    assert change.exit_code == 1 and "names no API URL" in change.stderr
    assert change.stderr.count("\n") == 1
    missing = ferry("models", "--env", "prod", ok=False)
    assert "cannot read stack Ferry-prod" in missing.stderr
