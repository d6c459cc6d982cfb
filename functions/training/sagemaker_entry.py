"""SageMaker training job entry point: the same training as the Lambda handler, for data or
fits that outgrow Lambda (15 minutes, 10 GB). SageMaker passes the request as hyperparameters
(`/opt/ml/input/config/hyperparameters.json`, every value a string) and the settings as the
job's environment; the candidate bundle goes to the same S3 prefix, so the state machine's
next state (validation) cannot tell which backend trained it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3

from ferry_core.retrain.provenance import RunEnvironment
from ferry_core.retrain.training import TrainingRequest, TrainingSettings, run_request

HYPERPARAMETERS = Path("/opt/ml/input/config/hyperparameters.json")
FAILURE_FILE = Path("/opt/ml/output/failure")  # SageMaker shows its content as FailureReason


def main() -> int:
    raw = json.loads(HYPERPARAMETERS.read_text())
    request = TrainingRequest.from_hyperparameters(raw)
    try:
        settings = TrainingSettings.from_env()
        # The job's stopping condition (infra passes it) bounds an isolated trainer.
        env = RunEnvironment("sagemaker", None, settings.job_seconds)
        result = run_request(boto3.client("s3"), boto3.client("dynamodb"), settings, request, env)
    except Exception as exc:
        FAILURE_FILE.parent.mkdir(parents=True, exist_ok=True)
        FAILURE_FILE.write_text(f"{type(exc).__name__}: {exc}"[:1024])
        raise
    print(json.dumps({k: v for k, v in result.items() if k != "metrics"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
