"""A model on real column names (`mean radius`, `Ünïcode col`, `a,b`) through the local platform:
signed HTTP predictions at the API's promised sizes, a batch CSV under those headers, drift."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pandas as pd
import pytest

RunningPlatform = Any  # tests/e2e/conftest.py: the `ferry local up` child process

MODEL = "breast-cancer"
PREDICT = f"/v1/models/{MODEL}/predict"


@pytest.fixture(scope="module")
def served(local_platform: RunningPlatform, named_built: Any, serve_model: Any) -> RunningPlatform:
    """The named-columns model, registered through the Python intake, in production."""
    serve_model(local_platform, named_built, MODEL)
    return local_platform


@pytest.fixture(scope="module")
def instances(named_frames: tuple[Any, Any, Any]) -> list[dict[str, Any]]:
    _, _, valid = named_frames
    return valid.drop(columns="target").to_dict(orient="records")


def test_the_card_keeps_the_names_and_maps_the_graph_inputs(served: RunningPlatform) -> None:
    status, _, card = served.request("GET", f"/v1/models/{MODEL}")
    assert status == 200
    features = {f["name"]: f for f in card["input_schema"]["features"]}
    assert {"mean radius", "Ünïcode col", "a,b"} <= set(features)
    assert features["mean radius"]["type"] == "number"
    assert features["a,b"]["onnx_input"] == "a_b"


def test_named_features_score_and_a_whole_valued_float_takes_a_fraction(
    served: RunningPlatform, instances: list[dict[str, Any]]
) -> None:
    row = {**instances[0], "mean radius": 53.5}
    status, _, body = served.request("POST", PREDICT, {"instances": [instances[1], row]})
    assert status == 200, body
    assert len(body["predictions"]) == 2
    status, _, body = served.request("POST", PREDICT, {"instances": [{**row, "a,b": "huge"}]})
    assert status == 422 and body["details"][0]["field"] == "a,b"


def test_a_thousand_instances_of_thirty_features_score(
    served: RunningPlatform, instances: list[dict[str, Any]]
) -> None:
    # Values at full double precision, as a client's encoder writes computed floats.
    rows = [
        {k: v * (1 + 1e-9 * i) if isinstance(v, float) else v for k, v in r.items()}
        for i, r in enumerate((instances * 8)[:1000])
    ]
    raw = json.dumps({"instances": rows}).encode()
    assert len(raw) > 1_048_576  # over the old limit, within the promise
    status, _, body = served.request("POST", PREDICT, raw=raw)
    assert status == 200, body
    assert len(body["predictions"]) == 1000


def test_over_a_thousand_instances_is_a_bad_request_and_over_six_mb_too_large(
    served: RunningPlatform, instances: list[dict[str, Any]]
) -> None:
    raw = json.dumps({"instances": (instances * 8)[:1001]}).encode()
    status, _, body = served.request("POST", PREDICT, raw=raw)
    assert (status, body["error"]) == (400, "bad_request")
    assert "at most 1000" in body["message"]
    raw = json.dumps({"instances": [{"mean radius": 1.0, "pad": "x" * (6 * 1024 * 1024)}]}).encode()
    status, _, body = served.request("POST", PREDICT, raw=raw)
    assert (status, body["error"]) == (413, "too_large")


def _finished_manifest(s3: Any, bucket: str, key: str, timeout: float = 120) -> dict[str, Any]:
    """The run's manifest once it is no longer `in_progress`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if manifest["status"] != "in_progress":
                return manifest  # type: ignore[no-any-return]
        except s3.exceptions.NoSuchKey:
            pass
        assert time.monotonic() < deadline, f"{key} not finished after {timeout} s"
        time.sleep(1)


def test_a_batch_csv_with_those_headers_scores_and_drift_runs(
    served: RunningPlatform, named_frames: tuple[Any, Any, Any]
) -> None:
    """
    Given a CSV of 60 rows under the model's headers (`a,b` quoted), one with an unknown category
    When the data scientist uploads it
    Then rows in = scored + rejected, the scored CSV has the same headers, and a drift run over
        the model's captured rows names its features
    """
    _, _, valid = named_frames
    frame = valid.drop(columns="target").head(60).copy()
    frame.loc[3, "a,b"] = "medium"
    body = frame.to_csv(index=False).encode()
    assert b'"a,b"' in body.split(b"\n", 1)[0]  # the header cell is quoted
    bucket = served.outputs["DataBucketName"]
    s3 = served.client("s3", "data-scientist")
    s3.put_object(Bucket=bucket, Key=f"batch/incoming/{MODEL}/names.csv", Body=body)

    manifest = _finished_manifest(s3, bucket, f"batch/manifests/{MODEL}/names.json")

    assert manifest["status"] == "succeeded", manifest
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"] == 60
    assert manifest["rows_rejected"] == 1
    scored_csv = s3.get_object(Bucket=bucket, Key=f"batch/scored/{MODEL}/names.csv")["Body"]
    scored = pd.read_csv(io.BytesIO(scored_csv.read()))
    assert list(scored.columns)[: frame.shape[1]] == list(frame.columns)
    assert len(scored) == 59

    result = served.client("lambda").invoke(
        FunctionName=served.outputs["DriftFunctionName"], Payload=json.dumps({"models": [MODEL]})
    )
    (report,) = json.loads(result["Payload"].read())["reports"]
    assert report["model"] == MODEL and report["verdict"] != "failed", report
