"""The pieces of the local platform that need no server: intrinsics, names, routes, responses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ferry_local.http_api import Route, lambda_response, match_route, routes_from_template
from ferry_local.template import Resolver, TemplateError

TEMPLATE: dict[str, Any] = {
    "Parameters": {"Stage": {"Type": "String", "Default": "local"}},
    "Conditions": {"IsLocal": {"Fn::Equals": [{"Ref": "Stage"}, "local"]}},
    "Resources": {
        "DataBucketB1B922FA": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "NamedBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "my-bucket"}},
        "JobsQueue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "FifoQueue": {"Type": "AWS::SQS::Queue", "Properties": {"FifoQueue": True}},
        "Topic": {"Type": "AWS::SNS::Topic", "Properties": {}},
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}},
            "DependsOn": ["Table"],
        },
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {}},
        "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {}},
        "Integration": {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": {"Ref": "Api"},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::Join": ["", [{"Fn::GetAtt": ["Fn", "Arn"]}, ":live"]]},
                "PayloadFormatVersion": "2.0",
            },
        },
        "PredictRoute": {
            "Type": "AWS::ApiGatewayV2::Route",
            "Properties": {
                "ApiId": {"Ref": "Api"},
                "RouteKey": "POST /v1/models/{model}/predict",
                "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integration"}]]},
            },
        },
    },
}


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(TEMPLATE, stack_name="Ferry-local", region="eu-west-1", account_id="1" * 12)


def test_refs_follow_cloudformation_per_type(resolver: Resolver) -> None:
    assert resolver.resolve({"Ref": "DataBucketB1B922FA"}) == "ferry-local-databucketb1b922fa"
    assert resolver.resolve({"Ref": "NamedBucket"}) == "my-bucket"
    assert resolver.resolve({"Ref": "JobsQueue"}).endswith("/111111111111/Ferry-local-JobsQueue")
    assert resolver.physical_id("FifoQueue").endswith(".fifo")
    assert resolver.resolve({"Ref": "Topic"}) == (
        "arn:aws:sns:eu-west-1:111111111111:Ferry-local-Topic"
    )
    assert resolver.resolve({"Ref": "Machine"}).startswith("arn:aws:states:eu-west-1:")
    assert resolver.resolve({"Ref": "Stage"}) == "local"


def test_attributes_and_string_functions(resolver: Resolver) -> None:
    assert resolver.resolve({"Fn::GetAtt": ["Table", "Arn"]}) == (
        "arn:aws:dynamodb:eu-west-1:111111111111:table/Ferry-local-Table"
    )
    assert resolver.resolve({"Fn::GetAtt": "JobsQueue.QueueName"}) == "Ferry-local-JobsQueue"
    sub = {"Fn::Sub": ["${AWS::Region}/${Table}/${!Literal}/${X}", {"X": {"Ref": "Stage"}}]}
    assert resolver.resolve(sub) == "eu-west-1/Ferry-local-Table/${Literal}/local"
    split = {"Fn::Select": [1, {"Fn::Split": [":", {"Fn::GetAtt": ["Role", "Arn"]}]}]}
    assert resolver.resolve(split) == "aws"
    cond = {"Fn::If": ["IsLocal", "yes", {"Ref": "AWS::NoValue"}]}
    assert resolver.resolve({"A": cond, "B": [1, {"Ref": "AWS::NoValue"}]}) == {
        "A": "yes",
        "B": [1],
    }


def test_what_cannot_be_evaluated_is_a_clear_error(resolver: Resolver) -> None:
    with pytest.raises(TemplateError, match="Nope"):
        resolver.resolve({"Ref": "Nope"})
    with pytest.raises(TemplateError, match="attribute Colour"):
        resolver.resolve({"Fn::GetAtt": ["Table", "Colour"]})
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        resolver.resolve({"Fn::ImportValue": "x"})


def test_generated_names_are_deterministic_and_valid() -> None:
    long_id = "Bucket" + "X" * 80
    template = {"Resources": {long_id: {"Type": "AWS::S3::Bucket", "Properties": {}}}}
    first = Resolver(template).physical_id(long_id)
    assert first == Resolver(template).physical_id(long_id)
    assert len(first) <= 63 and first == first.lower()


def test_dependencies_come_from_refs_getatts_and_depends_on(resolver: Resolver) -> None:
    assert resolver.dependencies("Fn") == {"Role", "Table"}
    assert resolver.dependencies("PredictRoute") == {"Api", "Integration"}


def test_routes_are_read_from_the_template(resolver: Resolver) -> None:
    (route,) = routes_from_template(resolver)
    assert route.route_key == "POST /v1/models/{model}/predict"
    assert route.function_name == "Ferry-local-Fn"


def _route(key: str) -> Route:
    method, _, path = key.partition(" ")
    return Route(key, method, path, "fn")


def test_route_selection_follows_api_gateway() -> None:
    keys = ["GET /v1/models/{model}", "GET /v1/models/special", "ANY /files/{path+}", "$default"]
    routes = sorted((_route(k) for k in keys), key=lambda r: r.specificity)
    assert match_route(routes, "GET", "/v1/models/special")[0].route_key == keys[1]
    assert match_route(routes, "GET", "/v1/models/m1") == (_route(keys[0]), {"model": "m1"})
    assert match_route(routes, "PUT", "/files/a/b.csv")[1] == {"path": "a/b.csv"}
    assert match_route(routes, "POST", "/v1/models/m1")[0].route_key == "$default"
    assert match_route(routes[:3], "POST", "/v1/models/m1") is None


def test_lambda_results_translate_like_api_gateway() -> None:
    proxy = {
        "statusCode": 201,
        "headers": {"X-Thing": "1"},
        "body": base64.b64encode(b"\x00bin").decode(),
        "isBase64Encoded": True,
        "cookies": ["a=1", "b=2"],
    }
    status, headers, body = lambda_response(json.dumps(proxy).encode(), False)
    assert (status, headers["x-thing"], body) == (201, "1", b"\x00bin")
    assert headers["set-cookie"].split("\n") == ["a=1", "b=2"]
    assert lambda_response(b'{"plain": true}', False) == (
        200,
        {"content-type": "application/json"},
        b'{"plain": true}',
    )
    status, _, body = lambda_response(b'{"errorMessage": "boom"}', True)
    assert status == 500 and json.loads(body)["error"] == "internal_error"
