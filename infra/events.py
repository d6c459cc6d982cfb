"""The registry's event schemas: one EventBridge schema registry and a schema per detail-type.

Receivers of `ferry.registry` events (a downstream system, a code binding generated from the
registry) get a documented schema for each detail-type. The schemas are generated from the
core's event models into infra/event_schemas.json (`scripts/event-schemas`, and a test fails
while the file is stale): the stack reads that file, it never imports the runtime code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import aws_eventschemas as eventschemas
from constructs import Construct

SCHEMAS_FILE = Path(__file__).with_name("event_schemas.json")


def load_schemas(path: Path = SCHEMAS_FILE) -> dict[str, Any]:
    """The checked-in schema document: `{"source", "format", "schemas": [{name, content…}]}`."""
    return json.loads(path.read_text())  # type: ignore[no-any-return]


class RegistryEventSchemas(Construct):
    """`AWS::EventSchemas::Registry` + one `AWS::EventSchemas::Schema` per detail-type."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        document = load_schemas()
        self.registry = eventschemas.CfnRegistry(
            self,
            "Registry",
            description=f"Schemas of the {document['source']} events (one per detail-type)",
        )
        self.schemas: dict[str, eventschemas.CfnSchema] = {}
        for entry in document["schemas"]:
            schema = eventschemas.CfnSchema(
                self,
                entry["detail_type"].replace(" ", ""),
                registry_name=self.registry.attr_registry_name,
                schema_name=entry["name"],
                type=document["format"],
                description=entry["description"][:256],
                content=json.dumps(entry["content"], sort_keys=True),
            )
            self.schemas[entry["detail_type"]] = schema
