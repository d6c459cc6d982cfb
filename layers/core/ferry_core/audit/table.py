"""The audit table: the typed entry, the bytes its hash covers, and the table's reads.

An entry `{model, seq, event, actor, at, version, before, after, reason, details, prev_hash,
hash}` carries `hash = sha256(canonical JSON of the entry without "hash")`. In DynamoDB
(partition key `model`, sort key `seq`) the JSON-valued fields (`before`, `after`, `details`)
are stored as JSON strings, exact and free of Decimal round trips, and a null `version` as NULL.
This module is the only one that turns entries into DynamoDB attributes and back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ferry_core.dynamo import decode, encode, encode_all

_JSON_FIELDS = ("before", "after", "details")
_TEXT_FIELDS = ("model", "event", "actor", "at", "reason", "prev_hash", "hash")
_FIELDS = frozenset((*_TEXT_FIELDS, *_JSON_FIELDS, "seq", "version"))


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class AuditEntry:
    """One link of a model's chain."""

    model: str
    seq: int
    event: str
    actor: str
    at: str
    version: int | None
    before: Any
    after: Any
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        """Everything the hash covers (the entry without its own hash)."""
        d = asdict(self)
        d.pop("hash")
        return d

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical(self.body())).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _TEXT_FIELDS}
        values |= {"seq": self.seq, "version": self.version}
        values |= {name: json.dumps(getattr(self, name), sort_keys=True) for name in _JSON_FIELDS}
        return encode_all(values)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> AuditEntry:
        """Rebuild an entry from its item; `ValueError` if the item is not a well-formed entry:
        an attribute missing or extra, or of another DynamoDB type than the entry stores."""
        extra = set(item) - _FIELDS
        missing = _FIELDS - set(item)
        if extra or missing:
            raise ValueError(
                f"unexpected attributes {sorted(extra)}" if extra else f"missing {sorted(missing)}"
            )
        try:
            values: dict[str, Any] = {name: _typed(item, name, "S") for name in _TEXT_FIELDS}
            values["seq"] = int(_typed(item, "seq", "N"))
            version = item["version"]
            values["version"] = None if "NULL" in version else int(_typed(item, "version", "N"))
            for name in _JSON_FIELDS:
                values[name] = json.loads(_typed(item, name, "S"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed attribute: {exc}") from exc
        return cls(**values)


def _typed(item: Mapping[str, Any], name: str, tag: str) -> str:
    """The wire text of attribute `name`, which must be of DynamoDB type `tag` (S or N):
    numbers are parsed from it exactly as written, so "2.5" is no sequence number."""
    return item[name][tag]


def item_seq(item: Mapping[str, Any]) -> int:
    """The sequence number of a stored item, well-formed or not (0 when it has none)."""
    return int(item.get("seq", {}).get("N", "0"))


class AuditTable:
    """The audit table's reads and the Put that appends an entry."""

    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.name = table

    def head_item(self, model: str) -> dict[str, Any] | None:
        """The stored item with the highest `seq` of `model`'s chain."""
        resp = self._ddb.query(
            TableName=self.name,
            KeyConditionExpression="#m = :m",
            ExpressionAttributeNames={"#m": "model"},
            ExpressionAttributeValues=encode_all({":m": model}),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = resp.get("Items", [])
        return items[0] if items else None

    def items(self, model: str) -> list[dict[str, Any]]:
        """Every stored item of `model`'s chain, as stored (verification judges each)."""
        kwargs = {
            "TableName": self.name,
            "KeyConditionExpression": "#m = :m",
            "ExpressionAttributeNames": {"#m": "model"},
            "ExpressionAttributeValues": encode_all({":m": model}),
            "ConsistentRead": True,
        }
        out: list[dict[str, Any]] = []
        for page in self._ddb.get_paginator("query").paginate(**kwargs):
            out.extend(page.get("Items", []))
        return out

    def models(self) -> list[str]:
        """Every model with an audit chain (a full scan: verification reads everything anyway)."""
        names: set[str] = set()
        for page in self._ddb.get_paginator("scan").paginate(
            TableName=self.name,
            ProjectionExpression="#m",
            ExpressionAttributeNames={"#m": "model"},
        ):
            names.update(decode(i["model"]) for i in page.get("Items", []))
        return sorted(names)

    def put_item(self, entry: AuditEntry) -> dict[str, Any]:
        """The transaction item that appends `entry`, only if its `seq` is still free."""
        return {
            "Put": {
                "TableName": self.name,
                "Item": entry.to_item(),
                "ConditionExpression": "attribute_not_exists(seq)",
            }
        }

    def key(self, model: str, seq: int) -> dict[str, Any]:
        """The primary key of entry `seq` of `model`."""
        return {"model": encode(model), "seq": encode(seq)}
