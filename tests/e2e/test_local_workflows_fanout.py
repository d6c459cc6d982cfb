"""The synthesized fan-out state machine on the local platform: an upload over the threshold
runs Split → Distributed Map (ItemReader: parts.json) → Merge through moto's interpreter, each
step a Lambda invocation of the real handler in its own worker process.

The platform runs in this process (as in test_local_platform_restart.py) so that a fault can be
put inside its S3 service: the part's summary write answers `SlowDown`, which every client the
part function makes retries and then gives up on. The thresholds are lowered as an operator
would, through UpdateFunctionConfiguration, so a file of tens of kilobytes fans out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ferry_core.batch.sample_files import applications, encode
from ferry_local.platform import LocalPlatform
from ferry_local.workflows import wait_for_executions
from infra.batch import PART_RETRIES

THRESHOLD_BYTES = 20_000
PART_BYTES = 12_000
ROWS = 600  # about 35 kB of CSV: three parts


@dataclass
class FanOut:
    platform: LocalPlatform
    machine: str
    part_function: str
    bucket: str

    def client(self, service: str) -> Any:
        assert self.platform.clients is not None
        return self.platform.clients[service]

    def part_invocations(self) -> int:
        log = self.platform.state_dir / "logs" / f"{self.part_function}.log"
        return log.read_text().count("START RequestId") if log.exists() else 0


@pytest.fixture(scope="module")
def fanout(tmp_path_factory: pytest.TempPathFactory, built: Any) -> Iterator[FanOut]:
    """The local platform, credit-risk in production, the batch functions' thresholds lowered."""
    from ferry_core.card import Lineage
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter

    with LocalPlatform(state_dir=tmp_path_factory.mktemp("fanout"), restore=False) as platform:
        assert platform.clients is not None and platform.resolver is not None
        clients, outputs = platform.clients, platform.outputs
        writer = RegistryWriter(clients["dynamodb"], outputs["RegistryTableName"])
        card = register_built(
            built, "credit-risk", clients["s3"], outputs["ModelBucketName"], writer, Lineage()
        )
        writer.set_stage("credit-risk", "production", card.version, None, actor="tests")
        lam = clients["lambda"]
        for fn in lam.list_functions()["Functions"]:
            variables = fn.get("Environment", {}).get("Variables", {})
            if "BATCH_FANOUT_THRESHOLD_BYTES" in variables:
                variables |= {
                    "BATCH_FANOUT_THRESHOLD_BYTES": str(THRESHOLD_BYTES),
                    "BATCH_PART_BYTES": str(PART_BYTES),
                }
                lam.update_function_configuration(
                    FunctionName=fn["FunctionName"], Environment={"Variables": variables}
                )
        resources = platform.resolver.resources
        machine = next(
            platform.resolver.arn(lid)
            for lid, r in resources.items()
            if r["Type"] == "AWS::StepFunctions::StateMachine" and lid.startswith("BatchFanOut")
        )
        part = next(
            platform.resolver.physical_id(lid)
            for lid, r in resources.items()
            if r["Type"] == "AWS::Lambda::Function" and lid.startswith("BatchPartFunction")
        )
        yield FanOut(platform, machine, part, outputs["DataBucketName"])


@dataclass
class SlowDownSummaries:
    """S3 answers `SlowDown` to the first `times` PutObjects of part summaries (None: all)."""

    times: int | None
    fired: int = 0

    def wrap(self, original: Any) -> Any:
        from moto.s3.exceptions import S3ClientError

        def put_object(backend: Any, bucket_name: str, key_name: str, *a: Any, **kw: Any) -> Any:
            wanted = "/summary-00001.json" in key_name
            if wanted and (self.times is None or self.fired < self.times):
                self.fired += 1
                raise S3ClientError("SlowDown", "Please reduce your request rate.")
            return original(backend, bucket_name, key_name, *a, **kw)

        return put_object


def _run(fanout: FanOut, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Upload `name` (over the threshold); wait for its execution: (execution, history)."""
    sfn = fanout.client("stepfunctions")
    before = len(sfn.list_executions(stateMachineArn=fanout.machine)["executions"])
    body = encode(applications(ROWS, "csv", share=0.05), "csv")
    assert len(body) > THRESHOLD_BYTES
    key = f"batch/incoming/credit-risk/{name}.csv"
    fanout.client("s3").put_object(Bucket=fanout.bucket, Key=key, Body=body)
    (execution, *_) = wait_for_executions(sfn, fanout.machine, count=before + 1, timeout=300)
    assert json.loads(execution["input"])["object"]["key"] == key
    arn = execution["executionArn"]
    history = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return execution, history


def _manifest(fanout: FanOut, name: str) -> dict[str, Any]:
    s3 = fanout.client("s3")
    key = f"batch/manifests/credit-risk/{name}.json"
    return json.loads(s3.get_object(Bucket=fanout.bucket, Key=key)["Body"].read())


def _entered(history: list[dict[str, Any]]) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
    ]


def _map_run(fanout: FanOut, execution: dict[str, Any]) -> dict[str, Any]:
    sfn = fanout.client("stepfunctions")
    (run,) = sfn.list_map_runs(executionArn=execution["executionArn"])["mapRuns"]
    return sfn.describe_map_run(mapRunArn=run["mapRunArn"])  # type: ignore[no-any-return]


def _keys(fanout: FanOut, prefix: str) -> list[str]:
    listed = fanout.client("s3").list_objects_v2(Bucket=fanout.bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_an_upload_over_the_threshold_runs_the_synthesized_distributed_map(
    fanout: FanOut,
) -> None:
    """
    Given the local platform with the fan-out threshold below the file's size
    When the file is uploaded to the data bucket
    Then the queue consumer starts the synthesized state machine, which runs Split, a
        Distributed Map Run reading parts.json with one Part invocation per part, and Merge;
        the manifest says rows in = scored + rejected, and the outputs hold exactly those rows
    """
    invoked = fanout.part_invocations()
    execution, history = _run(fanout, "fan/plain")

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert _entered(history) == ["Split", "Ready?", "Parts", "Merge"]
    types = [e["type"] for e in history]
    assert {"MapRunStarted", "MapRunSucceeded"} <= set(types)
    split = next(e for e in history if e["type"] == "LambdaFunctionSucceeded")
    parts = json.loads(split["lambdaFunctionSucceededEventDetails"]["output"])["parts"]
    assert parts >= 3
    run = _map_run(fanout, execution)
    assert run["status"] == "SUCCEEDED" and run["maxConcurrency"] == 20
    assert run["itemCounts"]["total"] == run["itemCounts"]["succeeded"] == parts
    assert fanout.part_invocations() - invoked == parts  # one child iteration each, no retry
    manifest = _manifest(fanout, "fan/plain")
    assert manifest["status"] == "succeeded" and manifest["parts"] == parts
    assert manifest["rows_in"] == ROWS == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] > 0
    s3 = fanout.client("s3")
    scored = s3.get_object(Bucket=fanout.bucket, Key=manifest["outputs"]["scored"])["Body"].read()
    rejected = s3.get_object(Bucket=fanout.bucket, Key=manifest["outputs"]["rejected"])
    assert scored.count(b"\n") - 1 == manifest["rows_scored"]  # the header, then one per row
    assert rejected["Body"].read().count(b"\n") == manifest["rows_rejected"]
    assert _keys(fanout, "batch/staging/") == []


def test_a_transient_part_failure_is_retried_by_the_machines_retry(
    fanout: FanOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Given S3 answering SlowDown to the second part's summary write 3 times (one invocation's
        worth of botocore attempts), so the part function's first invocation fails
    When a file over the threshold is uploaded
    Then the Part state's Retry invokes it again, the Map Run and the execution succeed, and
        the manifest adds up
    """
    from moto.s3.models import S3Backend

    fault = SlowDownSummaries(times=3)
    monkeypatch.setattr(S3Backend, "put_object", fault.wrap(S3Backend.put_object))
    invoked = fanout.part_invocations()
    execution, history = _run(fanout, "fan/transient")
    monkeypatch.undo()

    assert fault.fired == 3
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert _entered(history) == ["Split", "Ready?", "Parts", "Merge"]
    run = _map_run(fanout, execution)
    parts = run["itemCounts"]["total"]
    assert run["itemCounts"]["succeeded"] == parts and run["itemCounts"]["failed"] == 0
    assert fanout.part_invocations() - invoked == parts + 1  # the failed one, once more
    manifest = _manifest(fanout, "fan/transient")
    assert manifest["status"] == "succeeded"
    assert manifest["rows_in"] == ROWS == manifest["rows_scored"] + manifest["rows_rejected"]


def test_a_persistent_part_failure_goes_through_catch_to_the_failed_manifest(
    fanout: FanOut, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Given S3 answering SlowDown to every write of the second part's summary
    When a file over the threshold is uploaded
    Then the Part is tried 1 + PART_RETRIES times, the Map Run fails with
        States.ExceedToleratedFailureThreshold (no failure is tolerated), the Map's Catch
        runs Fail (Merge never runs), the execution fails, and the manifest is failed with
        the reason while no scored or rejected output and no staging object is left
    """
    from moto.s3.models import S3Backend

    fault = SlowDownSummaries(times=None)
    monkeypatch.setattr(S3Backend, "put_object", fault.wrap(S3Backend.put_object))
    invoked = fanout.part_invocations()
    execution, history = _run(fanout, "fan/persistent")
    monkeypatch.undo()

    assert execution["status"] == "FAILED" and execution["error"] == "BatchFailed"
    assert _entered(history) == ["Split", "Ready?", "Parts", "Fail", "Failed"]
    (map_failed,) = [e for e in history if e["type"] == "MapRunFailed"]
    details = map_failed["mapRunFailedEventDetails"]
    assert details["error"] == "States.ExceedToleratedFailureThreshold"
    run = _map_run(fanout, execution)
    assert run["status"] == "FAILED" and run["itemCounts"]["failed"] == 1
    parts = run["itemCounts"]["total"]
    assert fanout.part_invocations() - invoked == parts + PART_RETRIES
    assert fault.fired == 3 * (1 + PART_RETRIES)  # botocore's 3 attempts per invocation
    manifest = _manifest(fanout, "fan/persistent")
    assert manifest["status"] == "failed"
    assert manifest["reason"].startswith("fan-out failed: States.ExceedToleratedFailureThreshold")
    assert _keys(fanout, "batch/scored/credit-risk/fan/persistent") == []
    assert _keys(fanout, "batch/rejected/credit-risk/fan/persistent") == []
    assert _keys(fanout, "batch/staging/") == []
