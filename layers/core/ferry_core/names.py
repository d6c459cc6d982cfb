"""The one definition of a model name, shared by every record, request and route.

A model name is part of S3 keys, DynamoDB keys, metric dimensions and URL paths, so it is kept
to lower-case letters, digits and dashes: the same string is valid in all of them.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
MODEL_NAME = re.compile(MODEL_NAME_PATTERN)

ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]
"""A model name as a pydantic field type: `model: ModelName`."""


def is_model_name(value: str) -> bool:
    """True when `value` can name a model (checked before any read, so bad names cost nothing)."""
    return MODEL_NAME.fullmatch(value) is not None  # `$` alone would let a final "\n" through
