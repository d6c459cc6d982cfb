"""Training function: labelled data in, a candidate bundle out (ferry_core/retrain/training.py).

Invoked by the retrain-and-promote state machine with
`{"model", "run_id", "training_data"?, "entry_point"?, "params"?, "actor"?, "trigger"?}`.
Everything is in the core (`run_training`); this module reads its settings, passes clients in
and shapes the output the next state (validation) reads. A failure raises: the state machine's
Catch records it (a `TrainingFailed` message names the bad data or the trainer's error).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ferry_core.retrain.training import TrainingRequest, TrainingSettings, run_request

logger = Logger()
metrics = Metrics()


@cache
def s3() -> Any:
    return boto3.client("s3")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = TrainingRequest.model_validate(event)
    settings = TrainingSettings.from_env()
    metrics.add_dimension("model", request.model)
    result = run_request(s3(), settings, request)
    metrics.add_metric(name="TrainingRuns", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TrainingRows", unit=MetricUnit.Count, value=result["rows"])
    logger.info("candidate written", **{k: v for k, v in result.items() if k != "metrics"})
    return result
