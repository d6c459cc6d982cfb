"""DynamoDB attribute values of plain Python values: the codec every table module shares.

boto3's own serializer, with floats written as the shortest decimal that reads back as the
same float (`repr`), so no value goes through a binary-to-decimal rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def encode(value: Any) -> dict[str, Any]:
    """One attribute value: str → S, int and float → N, None → NULL, bool → BOOL."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    return _SERIALIZER.serialize(value)


def decode(attribute: Mapping[str, Any]) -> Any:
    """The Python value of one attribute (numbers come back as `Decimal`)."""
    return _DESERIALIZER.deserialize(dict(attribute))


def encode_all(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Attribute values by name, e.g. a request's `ExpressionAttributeValues`."""
    return {name: encode(v) for name, v in values.items()}


def decode_all(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """An item's attributes as Python values."""
    return {name: decode(v) for name, v in item.items()}
