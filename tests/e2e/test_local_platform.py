"""`ferry local up` serves the synthesized stack: its routes, its resources, the real handlers.

Driven through public surfaces only: HTTP to `api_url`, boto3 at `aws_endpoint_url`, the
command line (the session fixture is `ferry local up` in a child process) and `local.json`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ferry_local.http_api import ROUTE_HEADER
from ferry_local.template import LOCAL_STACK, REPO_ROOT, Resolver, SynthesizedStack

RunningPlatform = Any  # tests/e2e/conftest.py: the `ferry local up` child process

MODEL = "credit-risk"
GOOD = {
    "age": 41,
    "annual_income": 52000.0,
    "loan_amount": 12000.0,
    "loan_term_months": 36,
    "debt_to_income": 0.31,
    "credit_history_years": 12.0,
    "open_accounts": 4,
    "purpose": "car",
    "employment": "salaried",
    "prior_default": False,
}


@pytest.fixture(scope="module")
def stack(local_platform: RunningPlatform) -> SynthesizedStack:
    """The template the running platform was built from (the shared synth cache)."""
    return SynthesizedStack.from_cdk_out(REPO_ROOT / ".ferry" / "cdk.out", LOCAL_STACK)


@pytest.fixture(scope="module")
def scored(local_platform: RunningPlatform, built: Any, serve_model: Any) -> RunningPlatform:
    """The platform with credit-risk in production."""
    serve_model(local_platform, built, MODEL)
    return local_platform


def _template_route_keys(stack: SynthesizedStack) -> set[str]:
    return {
        r["Properties"]["RouteKey"]
        for r in stack.template["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }


def _concrete(route_key: str) -> tuple[str, str]:
    method, path = route_key.split(" ", 1)
    return method, re.sub(r"\{[^}]+\}", "no-such-model", path.replace("{stage}", "staging"))


def test_local_json_has_the_design_shape_and_the_stack_outputs(
    local_platform: RunningPlatform, stack: SynthesizedStack
) -> None:
    info = local_platform.info
    assert set(info) == {"api_url", "aws_endpoint_url", "region", "stack", "outputs", "identities"}
    assert info["stack"] == "Ferry-local"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", info["api_url"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", info["aws_endpoint_url"])
    assert set(info["outputs"]) == set(stack.template["Outputs"])
    assert info["outputs"]["ApiUrl"] == info["api_url"] + "/"


def test_every_route_of_the_template_is_served_and_no_other(
    local_platform: RunningPlatform, stack: SynthesizedStack
) -> None:
    """Given the synthesized HTTP API's routes, each request lands on exactly its route (the
    governance routes signed by the admin, whose role may call them)."""
    template_routes = _template_route_keys(stack)
    assert template_routes, "the stack has no HTTP API routes"
    served = set()
    for route_key in template_routes:
        method, path = _concrete(route_key)
        body = {"instances": [GOOD]} if method == "POST" else None
        identity = "client"
        if path.startswith("/v1/governance/"):  # a model that does not exist: refused, no change
            body, identity = {"model": "no-such-model", "version": 1}, "admin"
        status, headers, _ = local_platform.request(method, path, body, identity=identity)
        assert status != 500, route_key
        served.add(headers[ROUTE_HEADER])
    assert served == template_routes

    for method, path in [("GET", "/v1/nothing"), ("DELETE", "/health"), ("GET", "/")]:
        status, headers, body = local_platform.request(method, path)
        assert status == 404, (method, path)
        assert body == {"message": "Not Found"} and headers["apigw-requestid"]
        assert ROUTE_HEADER not in headers


def test_every_resource_of_the_template_exists_in_the_local_aws(
    local_platform: RunningPlatform, stack: SynthesizedStack
) -> None:
    """Buckets, tables, queues, topics, functions and state machines: same set as the stack."""
    names = Resolver(stack.template, stack_name=stack.name)
    expected: dict[str, set[str]] = {}
    for lid, resource in stack.template["Resources"].items():
        expected.setdefault(resource["Type"], set()).add(names.physical_id(lid))
    c = local_platform.client
    actual = {
        "AWS::S3::Bucket": {b["Name"] for b in c("s3").list_buckets()["Buckets"]},
        "AWS::DynamoDB::Table": set(c("dynamodb").list_tables()["TableNames"]),
        "AWS::SQS::Queue": {
            u.rsplit("/", 1)[1] for u in c("sqs").list_queues().get("QueueUrls", [])
        },
        "AWS::SNS::Topic": {
            t["TopicArn"].rsplit(":", 1)[1] for t in c("sns").list_topics()["Topics"]
        },
        "AWS::Lambda::Function": {
            f["FunctionName"] for f in c("lambda").list_functions()["Functions"]
        },
        "AWS::StepFunctions::StateMachine": {
            m["name"] for m in c("stepfunctions").list_state_machines()["stateMachines"]
        },
    }
    for rtype, present in actual.items():
        assert present == expected.get(rtype, set()), rtype


def test_outputs_name_real_local_resources(local_platform: RunningPlatform) -> None:
    outputs = local_platform.outputs
    s3, ddb = local_platform.client("s3"), local_platform.client("dynamodb")
    s3.head_bucket(Bucket=outputs["ModelBucketName"])
    versioning = s3.get_bucket_versioning(Bucket=outputs["ModelBucketName"])
    assert versioning["Status"] == "Enabled"
    assert ddb.describe_table(TableName=outputs["RegistryTableName"])["Table"]["KeySchema"]
    fn = local_platform.client("lambda").get_function(FunctionName=outputs["ScoringFunctionName"])
    variables = fn["Configuration"]["Environment"]["Variables"]
    assert variables["MODEL_BUCKET"] == outputs["ModelBucketName"]
    assert variables["REGISTRY_TABLE"] == outputs["RegistryTableName"]


def test_a_registered_model_scores_through_the_http_api(scored: RunningPlatform) -> None:
    status, headers, body = scored.request(
        "POST", f"/v1/models/{MODEL}/predict", {"instances": [GOOD, {**GOOD, "age": 70}]}
    )
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    status, _, card = scored.request("GET", f"/v1/models/{MODEL}")
    assert status == 200 and card["name"] == MODEL
    assert body["model"] == MODEL and body["version"] == card["version"]
    assert len(body["predictions"]) == 2
    assert all(0.0 <= p["score"] <= 1.0 for p in body["predictions"])
    assert body["request_id"] == headers["apigw-requestid"]
    status, _, listing = scored.request("GET", "/v1/models")
    assert status == 200 and MODEL in json.dumps(listing)


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (json.dumps({"instances": [{**GOOD, "age": "forty"}]}).encode(), 422, "validation_failed"),
        (json.dumps({"instances": [GOOD]}).encode(), 404, "model_not_found"),
    ],
    ids=["not-json", "wrong-type", "unknown-model"],
)
def test_bad_requests_get_their_documented_error(
    scored: RunningPlatform, raw: bytes, status: int, code: str
) -> None:
    model = "nobody" if code == "model_not_found" else MODEL
    got, _, body = scored.request("POST", f"/v1/models/{model}/predict", raw=raw)
    assert (got, body["error"]) == (status, code), body
    if code == "validation_failed":
        assert body["details"][0]["field"] == "age"


def test_a_body_over_the_gateway_limit_is_413_not_a_crash(local_platform: RunningPlatform) -> None:
    raw = b'{"instances": [' + b" " * (7 * 1024 * 1024) + b"]}"
    status, _, body = local_platform.request("POST", f"/v1/models/{MODEL}/predict", raw=raw)
    assert status == 413 and body["error"] == "too_large"
    status, _, _ = local_platform.request("GET", "/health")
    assert status == 200


def test_query_strings_reach_the_handler(scored: RunningPlatform) -> None:
    status, _, body = scored.request("GET", f"/v1/models/{MODEL}?version=7")
    assert status == 404 and body["error"] == "version_not_found"


def test_function_logs_are_written_per_function(scored: RunningPlatform) -> None:
    scored.request("GET", "/health")
    name = scored.outputs["ScoringFunctionName"]
    log = (scored.state_dir / "logs" / f"{name}.log").read_text()
    assert "START RequestId" in log and "REPORT RequestId" in log
    assert '"_aws"' in log  # the handler's EMF metrics, as CloudWatch Logs would receive them


def test_functions_run_from_their_source_folders(stack: SynthesizedStack) -> None:
    """Image functions map to the folder of their Dockerfile, and its CMD names the handler."""
    for resource in stack.template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        if "ImageUri" not in props.get("Code", {}):
            continue
        folder, handler = stack.function_source(props)
        assert folder.parent == REPO_ROOT / "functions"
        assert (folder / (handler.split(".")[0] + ".py")).is_file()


def test_every_route_wants_a_signature_and_the_client_identity_has_one(
    local_platform: RunningPlatform,
) -> None:
    """Given the platform's IAM-authorized routes, an unsigned call is refused in API
    Gateway's shape and logged as refused; the same call signed as `client` is served."""
    status, headers, body = local_platform.request("GET", "/health", identity=None)
    assert (status, body) == (403, {"message": "Forbidden"})
    assert headers["apigw-requestid"] and ROUTE_HEADER not in headers
    assert local_platform.request("GET", "/health")[0] == 200
    log = local_platform.state_dir / "logs" / "http-api.log"
    refused = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["status"] == 403 and r["errorMessage"] == "unsigned request" for r in refused)
