"""Locust users for `ferry bench load`: real predict requests plus a share of bad ones.

Run by `ferry bench load` in its own process (Locust's gevent patches the process it runs in):
`locust -f locustfile.py --host API_URL`. Settings come from the environment:
FERRY_LOAD_ROWS (a JSON file of valid instances from the demo model's data generator),
FERRY_LOAD_MODEL, FERRY_LOAD_INSTANCES (instances per request), FERRY_LOAD_BAD_PERCENT,
FERRY_LOAD_REGION, and FERRY_LOAD_THROTTLE_FILE (where the first throttled request is noted).
Every request is signed with SigV4 with the credentials of the environment (the parent sets a
local identity's, or leaves the caller's own for a deployed stage). A bad request counts as a
success only when the API refuses it with the documented status and error code; anything else
(a 5xx, a wrong code, a timeout) is a failure in the report, a 429 too, noted as throttled.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import botocore.session
from locust import FastHttpUser, constant, events, task

from ferry_local.signing import sign

ROWS: list[dict[str, Any]] = json.loads(Path(os.environ["FERRY_LOAD_ROWS"]).read_text())
MODEL = os.environ.get("FERRY_LOAD_MODEL", "credit-risk")
INSTANCES = int(os.environ.get("FERRY_LOAD_INSTANCES", "1"))
BAD_PERCENT = int(os.environ.get("FERRY_LOAD_BAD_PERCENT", "10"))
PREDICT = f"/v1/models/{MODEL}/predict"
REGION = os.environ.get("FERRY_LOAD_REGION", "us-east-1")
CREDENTIALS = botocore.session.get_session().get_credentials()
THROTTLED: dict[str, float] = {"count": 0, "requests": 0, "started": time.monotonic()}


def _bad_requests() -> list[tuple[str, str, bytes, int, str]]:
    """(label, path, body, expected status, expected error code) of what clients get wrong."""
    row = dict(ROWS[0])
    first = next(iter(row))
    missing = {k: v for k, v in row.items() if k != first}

    def body(instance: dict[str, Any]) -> bytes:
        return json.dumps({"instances": [instance]}).encode()

    return [
        ("not JSON", PREDICT, b"{instances:", 400, "bad_request"),
        ("missing field", PREDICT, body(missing), 422, "validation_failed"),
        ("wrong type", PREDICT, body({**row, first: "not a number"}), 422, "validation_failed"),
        ("unknown model", "/v1/models/no-such-model/predict", body(row), 404, "model_not_found"),
    ]


BAD = _bad_requests()


class ScoringClient(FastHttpUser):
    """A client of the scoring API with no think time: the load is as high as the API allows."""

    wait_time = constant(0)

    def _post(self, path: str, body: bytes, name: str) -> Any:
        headers = sign(
            "POST",
            self.host.rstrip("/") + path,
            CREDENTIALS,
            REGION,
            body=body,
            headers={"content-type": "application/json"},
        )
        THROTTLED["requests"] += 1
        return self.client.post(path, data=body, headers=headers, name=name, catch_response=True)

    @task(100 - BAD_PERCENT)
    def predict(self) -> None:
        instances = random.sample(ROWS, min(INSTANCES, len(ROWS)))
        body = json.dumps({"instances": instances}).encode()
        with self._post(PREDICT, body, "predict: valid → 200") as resp:
            if resp.status_code == 429:
                _throttled(resp)
            elif resp.status_code != 200:
                resp.failure(f"{resp.status_code}: {(resp.text or '')[:200]}")
            elif len(resp.json().get("predictions", [])) != len(instances):
                resp.failure("wrong number of predictions")

    @task(BAD_PERCENT)
    def refused(self) -> None:
        label, path, body, status, code = random.choice(BAD)
        with self._post(path, body, f"predict: {label} → {status}") as resp:
            got = resp.json().get("error") if resp.text else None
            if resp.status_code == 429:
                _throttled(resp)
            elif resp.status_code != status or got != code:
                resp.failure(f"wanted {status} {code}, got {resp.status_code} {got}")
            else:
                resp.success()


def _throttled(resp: Any) -> None:
    """A 429: a failure in Locust's report, and the first one's moment noted for the bench."""
    if THROTTLED["count"] == 0:
        THROTTLED["first_after_s"] = round(time.monotonic() - THROTTLED["started"], 3)
        THROTTLED["first_after_requests"] = THROTTLED["requests"]
    THROTTLED["count"] += 1
    resp.failure("429 Too Many Requests (throttled by the stage)")


@events.quitting.add_listener
def _note_throttling(**_: Any) -> None:
    target = os.environ.get("FERRY_LOAD_THROTTLE_FILE")
    if target:
        Path(target).write_text(json.dumps({k: v for k, v in THROTTLED.items() if k != "started"}))
