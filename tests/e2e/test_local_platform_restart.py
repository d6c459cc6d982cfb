"""State survives a restart: stop snapshots buckets (every version), tables and the alarms put
at run time; start restores them.

Runs `LocalPlatform` in this process, the way `ferry demo` embeds it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from ferry_local.platform import LocalPlatform, PlatformError
from ferry_local.signing import credentials_of, sign
from tests.e2e.conftest import PlatformClient, register_and_promote

MODEL = "credit-risk"
DRIFT_ALARM = f"Ferry-local-model-{MODEL}-drift"
NOTES = "training/notes.txt"  # a prefix data scientists write
APPLICATION = {
    "age": 35,
    "annual_income": 48000.0,
    "loan_amount": 9000.0,
    "loan_term_months": 24,
    "debt_to_income": 0.2,
    "credit_history_years": 9.0,
    "open_accounts": 3,
    "purpose": "home",
    "employment": "salaried",
    "prior_default": False,
}


def _client(platform: LocalPlatform, identity: str, service: str) -> Any:
    """A client acting as one of the platform's local identities."""
    return boto3.client(
        service,
        endpoint_url=platform.aws_endpoint_url,
        region_name=platform.region,
        **platform.identities[identity].boto3_kwargs(),
    )


def _clients(platform: LocalPlatform, identity: str) -> tuple[Any, Any]:
    """S3 and DynamoDB clients acting as one of the platform's local identities."""
    return _client(platform, identity, "s3"), _client(platform, identity, "dynamodb")


def _call(
    platform: LocalPlatform, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """A call signed as the platform's `client` identity."""
    url = platform.api_url + path
    credentials = credentials_of(platform.identity("client"))
    headers = sign(method, url, credentials, platform.region, body=body)
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_registered_model_and_every_object_version_survive_a_restart(
    tmp_path: Path, built: Any
) -> None:
    # Given a platform with a model registered (by a data scientist, promoted by an approver,
    # through the governance API; the governance function put its alarms) and an object
    # overwritten once
    with LocalPlatform(state_dir=tmp_path) as platform:
        s3, _ = _clients(platform, "data-scientist")
        outputs = platform.outputs
        card = register_and_promote(PlatformClient(platform.info()), built, MODEL)
        first = s3.put_object(Bucket=outputs["DataBucketName"], Key=NOTES, Body=b"one")
        s3.put_object(Bucket=outputs["DataBucketName"], Key=NOTES, Body=b"two")
        assert (tmp_path / "local.json").exists()
    # When it stops, then starts again
    assert not (tmp_path / "local.json").exists()
    manifest = json.loads((tmp_path / "state" / "manifest.json").read_text())
    assert manifest["tables"][outputs["RegistryTableName"]] >= 2
    with LocalPlatform(state_dir=tmp_path) as again:
        # Then the model is still served, by the same version and artifact version id
        status, served = _call(again, "GET", f"/v1/models/{MODEL}")
        assert status == 200, served
        assert served["version"] == card.version
        assert served["artifact"]["s3_version_id"] == card.artifact.s3_version_id
        body = json.dumps({"instances": [APPLICATION]}).encode()
        status, scored = _call(again, "POST", f"/v1/models/{MODEL}/predict", body)
        assert scored["version"] == card.version  # the artifact loads by its version id
        s3, _ = _clients(again, "data-scientist")
        old = s3.get_object(
            Bucket=outputs["DataBucketName"], Key=NOTES, VersionId=first["VersionId"]
        )
        assert old["Body"].read() == b"one"
        latest = s3.get_object(Bucket=outputs["DataBucketName"], Key=NOTES)
        assert latest["Body"].read() == b"two"
        assert again.restored[f"s3://{outputs['DataBucketName']}"] == 2
        # and the model's alarms, which the template does not define, are back as they were
        assert again.restored["alarms"] == 5
        (drift,) = _client(again, "admin", "cloudwatch").describe_alarms(AlarmNames=[DRIFT_ALARM])[
            "MetricAlarms"
        ]
        assert (drift["MetricName"], drift["AlarmActions"]) == (
            "DriftMaxPSI",
            [outputs["AlarmTopicArn"]],
        )


def test_a_snapshot_from_another_moto_is_refused_with_the_way_out(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "manifest.json").write_text(json.dumps({"format": 1, "moto": "0.0.1"}))
    with pytest.raises(PlatformError, match="--fresh"):
        LocalPlatform(state_dir=tmp_path).start()
    assert not (tmp_path / "local.json").exists()
