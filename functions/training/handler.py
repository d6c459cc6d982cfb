"""Training function: labelled data in, a candidate bundle out (ferry_core/retrain/training.py).

Invoked by the retrain-and-promote state machine with
`{"model", "run_id", "training_data"?, "entry_point"?, "params"?, "actor"?, "trigger"?}`.
Everything is in the core (`run_request`); this module reads its settings, passes clients in,
says where it runs (its own name and remaining time from the context: the image digest is
resolved from the function itself) and shapes the output the next state (validation) reads. A
failure raises: the state machine's Catch records it (a `TrainingFailed` message names the bad
data, the trainer's error or the package its lock and the image disagree on).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ferry_core.retrain.provenance import lambda_environment
from ferry_core.retrain.training import TrainingRequest, TrainingSettings, run_request

logger = Logger()
metrics = Metrics()


@cache
def client(service: str) -> Any:
    return boto3.client(service)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = TrainingRequest.model_validate(event)
    settings = TrainingSettings.from_env()
    metrics.add_dimension("model", request.model)
    env = lambda_environment(
        client("lambda"),
        context.function_name,
        settings.lock_file,
        context.get_remaining_time_in_millis() / 1000,
    )
    result = run_request(client("s3"), client("dynamodb"), settings, request, env)
    metrics.add_metric(name="TrainingRuns", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TrainingRows", unit=MetricUnit.Count, value=result["rows"])
    logger.info("candidate written", **{k: v for k, v in result.items() if k != "metrics"})
    return result
