"""Timestamps as Ferry records them: UTC, milliseconds, ISO 8601 with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current time as every record stores it (registry, audit, lineage, manifests)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
