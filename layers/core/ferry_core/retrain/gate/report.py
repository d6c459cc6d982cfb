"""The gate's verdict: every check's result, the policy, and a one-line summary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ferry_core.retrain.gate.policy import GatePolicy

CHECKS = ("schema", "parity", "metrics", "segments", "scenarios", "latency")
MAX_LISTED = 50  # mismatches / breaks listed in a report; the counts are always complete


@dataclass(frozen=True)
class GateReport:
    """The outcome of one gate run; `as_dict()` is what the card's `validation` field holds."""

    candidate: dict[str, Any]  # the run ({"name", "run_id"}) or version ({"name", "version"})
    champion_version: int | None
    checks: list[dict[str, Any]]
    policy: GatePolicy
    at: str
    breaking_change: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    @property
    def failed_checks(self) -> list[str]:
        return [c["name"] for c in self.checks if not c["passed"]]

    def summary(self) -> str:
        """One line naming the failed checks and why (a rejection reason), or the pass."""
        against = (
            f"champion v{self.champion_version}"
            if self.champion_version is not None
            else "no champion (first version)"
        )
        if self.passed:
            names = ", ".join(c["name"] for c in self.checks)
            return f"passed all {len(self.checks)} checks ({names}) against {against}"
        parts = [f"{c['name']}: {c['message']}" for c in self.checks if not c["passed"]]
        line = f"failed {', '.join(self.failed_checks)} against {against} — " + "; ".join(parts)
        line = " ".join(line.split())
        return line if len(line) <= 1000 else line[:997] + "..."

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "passed": self.passed,
                "source": "validation",
                "at": self.at,
                "summary": self.summary(),
                "candidate": self.candidate,
                "champion_version": self.champion_version,
                "breaking_change": self.breaking_change,
                "policy": self.policy.as_dict(),
                "checks": self.checks,
            }
        )


def _jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
