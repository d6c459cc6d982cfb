"""The batch step of `ferry demo`: upload a CSV with malformed rows, deliver its S3 event from the
queue to the real batch handler, and return what a user would look at."""

from __future__ import annotations

import json
from typing import Any

from ferry_cli.batch_files import applications, encode
from ferry_local.events import LambdaContext, sqs_event
from ferry_local.handlers import load_handler
from ferry_local.moto_stack import StackResources

DEMO_KEY = "batch/incoming/credit-risk/demo/applications.csv"


def run_batch_step(
    res: StackResources, clients: dict[str, Any], rows: int = 2_000
) -> dict[str, Any]:
    """Upload, drain the queue into the batch function (as the event source mapping would).

    Needs the batch function's environment set (`res.batch_environment(...)`) and a production
    credit-risk version. Returns the manifest, the first scored rows, and the first rejects.
    """
    s3, sqs = clients["s3"], clients["sqs"]
    s3.put_object(
        Bucket=res.data_bucket, Key=DEMO_KEY, Body=encode(applications(rows, "csv"), "csv")
    )
    url = sqs.get_queue_url(QueueName=res.batch_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    handler = load_handler("batch")
    failed: list[Any] = []
    while True:
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0)
        messages = resp.get("Messages", [])
        if not messages:
            break
        out = handler.lambda_handler(sqs_event(messages, arn["QueueArn"]), LambdaContext())
        failed += out["batchItemFailures"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    manifest_key = "batch/manifests/credit-risk/demo/applications.json"
    manifest = json.loads(s3.get_object(Bucket=res.data_bucket, Key=manifest_key)["Body"].read())

    def head(key: str, n: int) -> list[str]:
        body = s3.get_object(Bucket=res.data_bucket, Key=key)["Body"].read().decode()
        return body.splitlines()[:n]

    return {
        "failed_messages": failed,
        "manifest": manifest,
        "scored_head": head(manifest["outputs"]["scored"], 4),
        "rejects_head": [json.loads(x) for x in head(manifest["outputs"]["rejected"], 5)],
    }
