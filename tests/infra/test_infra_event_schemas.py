"""The registry's event schemas in the template: one registry, one draft-4 schema per detail-type,
and the checked-in copy the stack reads is exactly what the core's event models generate."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from aws_cdk.assertions import Template

from ferry_core.registry.event_schemas import FORMAT, render, schema_name
from ferry_core.registry.events import EVENT_TYPES, SOURCE
from infra.events import SCHEMAS_FILE


def test_the_checked_in_schemas_are_what_the_event_models_generate() -> None:
    """Given the event models, when their schemas are generated, then infra's copy is the same
    text (run scripts/event-schemas after changing a model)."""
    assert SCHEMAS_FILE.read_text() == render(), (
        f"{SCHEMAS_FILE.name} is stale: run scripts/event-schemas and commit the result"
    )


def test_every_detail_type_has_a_schema_in_the_template(template: Template) -> None:
    """Given the synthesized stack, then one schema registry holds one schema per detail-type,
    each a valid draft-4 document of the `ferry.registry` event with that detail-type."""
    template.resource_count_is("AWS::EventSchemas::Registry", 1)
    (registry_id,) = template.find_resources("AWS::EventSchemas::Registry")
    schemas = template.find_resources("AWS::EventSchemas::Schema")
    by_name: dict[str, dict[str, Any]] = {
        s["Properties"]["SchemaName"]: s["Properties"] for s in schemas.values()
    }
    assert set(by_name) == {schema_name(kind) for kind in EVENT_TYPES.values()}
    for kind in EVENT_TYPES.values():
        props = by_name[schema_name(kind)]
        assert props["Type"] == FORMAT == "JSONSchemaDraft4"
        assert props["RegistryName"] == {"Fn::GetAtt": [registry_id, "RegistryName"]}
        content = json.loads(props["Content"])
        jsonschema.Draft4Validator.check_schema(content)
        envelope = content["properties"]
        assert envelope["detail-type"] == {"enum": [kind.detail_type]}
        assert envelope["source"] == {"enum": [SOURCE]}
