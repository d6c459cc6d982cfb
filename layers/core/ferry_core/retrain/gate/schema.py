"""The `schema` check: the candidate accepts everything the champion accepted (same names
and types, no category dropped, no range narrowed, no nullable removed, no feature removed, no
new required feature, same positive label), unless the caller flags a breaking change.
"""

from __future__ import annotations

from typing import Any

from ferry_core.card import Card, Feature, InputSchema
from ferry_core.retrain.candidate import CandidateSpec
from ferry_core.retrain.gate.reference import number_text
from ferry_core.retrain.gate.report import MAX_LISTED


def schema_breaks(old: InputSchema, new: InputSchema) -> list[str]:
    """Every way `new` refuses or changes a request `old` accepted (empty: compatible)."""
    breaks: list[str] = []
    new_by_name = {f.name: f for f in new.features}
    old_names = {f.name for f in old.features}
    for o in old.features:
        n = new_by_name.get(o.name)
        if n is None:
            breaks.append(f"{o.name}: feature removed")
            continue
        if n.type != o.type:
            breaks.append(f"{o.name}: type changed from {o.type} to {n.type}")
            continue
        if o.nullable and not n.nullable:
            breaks.append(f"{o.name}: no longer nullable")
        if o.type == "category":
            dropped = [c for c in o.categories or [] if c not in (n.categories or [])]
            if dropped:
                breaks.append(f"{o.name}: categories no longer accepted: {', '.join(dropped)}")
        breaks.extend(_range_breaks(o, n))
    for n in new.features:
        if n.name not in old_names and not n.nullable:
            breaks.append(f"{n.name}: new required feature (existing clients do not send it)")
    return breaks


def _range_breaks(o: Feature, n: Feature) -> list[str]:
    out: list[str] = []
    if o.type not in ("number", "integer"):
        return out
    if n.minimum is not None and (o.minimum is None or n.minimum > o.minimum):
        out.append(
            f"{o.name}: minimum raised from {number_text(o.minimum)} to {number_text(n.minimum)}"
        )
    if n.maximum is not None and (o.maximum is None or n.maximum < o.maximum):
        out.append(
            f"{o.name}: maximum lowered from {number_text(o.maximum)} to {number_text(n.maximum)}"
        )
    bounded = n.minimum is not None or n.maximum is not None
    if o.out_of_range == "clip_and_warn" and n.out_of_range == "reject" and bounded:
        out.append(f"{o.name}: out-of-range values now rejected (were clipped with a warning)")
    return out


def check_schema(
    spec: CandidateSpec, champion: Card | None, breaks: list[str], breaking_change: bool
) -> dict[str, Any]:
    """Compatible with the champion's contract, or the caller says the break is intended."""
    features = len(spec.input_schema.features)
    if champion is None:
        return {
            "passed": True,
            "message": "first version: no champion schema to stay compatible with",
            "features": features,
            "breaks": [],
        }
    figures = {
        "features": features,
        "champion_features": len(champion.input_schema.features),
        "breaks": breaks[:MAX_LISTED],
        "breaking_change": breaking_change,
    }
    if not breaks:
        return {
            "passed": True,
            "message": f"compatible with v{champion.version}'s input schema",
            **figures,
        }
    listed = "; ".join(breaks[:5]) + (f"; … {len(breaks) - 5} more" if len(breaks) > 5 else "")
    if breaking_change:
        return {
            "passed": True,
            "message": f"{len(breaks)} breaking change(s) from v{champion.version}, accepted by "
            f"the breaking_change flag: {listed}",
            **figures,
        }
    return {
        "passed": False,
        "message": f"{len(breaks)} incompatible change(s) from v{champion.version}'s input "
        f"schema (set breaking_change to accept them): {listed}",
        **figures,
    }


def output_breaks(spec: CandidateSpec, champion: Card) -> list[str]:
    if spec.output.positive_label != champion.output.positive_label:
        return [
            f"output: positive label changed from {champion.output.positive_label!r} "
            f"to {spec.output.positive_label!r}"
        ]
    return []
