"""The scoring function serves exactly the routes the stack gives it, under the same keys."""

from __future__ import annotations

from typing import Any

from ferry_local.handlers import load_handler


def test_handler_route_table_equals_the_stacks_routes(template_json: dict[str, Any]) -> None:
    routes = {
        r["Properties"]["RouteKey"]
        for r in template_json["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert routes == set(load_handler("scoring").ROUTES)
