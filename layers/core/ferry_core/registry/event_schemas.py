"""The JSON Schemas (draft 4) of the registry's EventBridge events, from the detail models.

EventBridge's schema registry takes OpenAPI 3 or JSON Schema draft 4; pydantic writes draft
2020-12, so the few constructs draft 4 lacks are rewritten (`const` → a one-value `enum`,
`$defs` → `definitions`). Each schema describes the whole event as a receiver gets it: the
EventBridge envelope (`detail-type` and `source` fixed) around the detail.

The stack may not import runtime code, so it reads a checked-in copy of `document()`
(infra/event_schemas.json); `scripts/event-schemas` rewrites it, and a test fails while it is
stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ferry_core.registry.events import EVENT_TYPES, SOURCE, EventType

DRAFT4 = "http://json-schema.org/draft-04/schema#"
FORMAT = "JSONSchemaDraft4"  # AWS::EventSchemas::Schema Type


def schema_name(kind: EventType) -> str:
    """`ferry.registry@ModelVersionPromoted`: EventBridge's own naming for a detail-type."""
    return f"{SOURCE}@{kind.detail_type.replace(' ', '')}"


def _draft4(node: Any) -> Any:
    """Rewrite pydantic's schema keywords that draft 4 lacks."""
    if isinstance(node, list):
        return [_draft4(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            out["enum"] = [value]
        elif key == "$defs":
            out["definitions"] = _draft4(value)
        else:
            out[key] = _draft4(value)
    return out


def event_schema(kind: EventType) -> dict[str, Any]:
    """The draft-4 schema of one detail-type's events, envelope included."""
    detail = kind.model.model_json_schema(ref_template="#/definitions/{model}")
    definitions = detail.pop("$defs", {})
    definitions[kind.model.__name__] = detail
    return _draft4(
        {
            "$schema": DRAFT4,
            "title": kind.detail_type,
            "description": (kind.model.__doc__ or "").strip(),
            "type": "object",
            "required": ["detail-type", "source", "detail"],
            "properties": {
                "version": {"type": "string"},
                "id": {"type": "string"},
                "detail-type": {"const": kind.detail_type},
                "source": {"const": SOURCE},
                "account": {"type": "string"},
                "time": {"type": "string", "format": "date-time"},
                "region": {"type": "string"},
                "resources": {"type": "array", "items": {"type": "string"}},
                "detail": {"$ref": f"#/definitions/{kind.model.__name__}"},
            },
            "definitions": definitions,
        }
    )


def document() -> dict[str, Any]:
    """Every detail-type's schema, in the shape infra/event_schemas.json holds."""
    return {
        "source": SOURCE,
        "format": FORMAT,
        "schemas": [
            {
                "name": schema_name(kind),
                "event": kind.event,
                "detail_type": kind.detail_type,
                "description": (kind.model.__doc__ or "").strip(),
                "content": event_schema(kind),
            }
            for kind in EVENT_TYPES.values()
        ],
    }


def render() -> str:
    """The file's exact text (stable: sorted keys, two-space indent, final newline)."""
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    """`python -m ferry_core.registry.event_schemas PATH`: write the document to PATH."""
    if len(argv) != 1:
        print("usage: python -m ferry_core.registry.event_schemas PATH", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
