"""Each function behind the API serves exactly the routes the stack gives it, by the same keys."""

from __future__ import annotations

from typing import Any

from ferry_local.handlers import load_handler

GOVERNANCE = "/v1/governance/"


def test_handler_route_table_equals_the_stacks_routes(template_json: dict[str, Any]) -> None:
    routes = {
        r["Properties"]["RouteKey"]
        for r in template_json["Resources"].values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    scoring = {r for r in routes if GOVERNANCE not in r}
    assert scoring == set(load_handler("scoring").ROUTES)
    # The governance function takes its action from the path: each one a route's, and back.
    handler = load_handler("governance")
    actions = {r.partition(" ")[2].split("/")[3] for r in routes - scoring}
    assert actions == set(handler.BODY_FIELDS)
