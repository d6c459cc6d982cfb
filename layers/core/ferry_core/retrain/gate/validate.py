"""Running the gate: every check on a candidate, and the validation step around it.

A candidate that fails a check is a result (the report says why), not an exception; only an
unreadable bundle or champion raises. `validate_candidate` is the whole step the validation
function runs: read the bundle, fetch the champion, gate, store `validation.json` beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from ferry_core.card import Card
from ferry_core.clock import now_iso
from ferry_core.errors import FerryError
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import (
    Bundle,
    CandidateSpec,
    CandidateUnavailable,
    read_bundle,
    write_report,
)
from ferry_core.retrain.gate.latency import check_latency
from ferry_core.retrain.gate.metrics import check_metrics
from ferry_core.retrain.gate.parity import check_parity
from ferry_core.retrain.gate.policy import GatePolicy, ValidationRequest
from ferry_core.retrain.gate.reference import CandidateUnderTest, GateInputError
from ferry_core.retrain.gate.report import GateReport
from ferry_core.retrain.gate.scenarios import check_scenarios
from ferry_core.retrain.gate.schema import check_schema, output_breaks, schema_breaks
from ferry_core.retrain.gate.segments import check_segments
from ferry_core.store import ModelStore


def _guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one check; a candidate that cannot even be checked fails it, with the reason."""
    try:
        return {"name": name, **fn()}
    except FerryError as exc:
        return {"name": name, "passed": False, "message": exc.message}
    except GateInputError as exc:
        return {"name": name, "passed": False, "message": str(exc)}


def run_gate(
    spec: CandidateSpec,
    onnx_bytes: bytes,
    reference: pa.Table,
    champion: Card | None,
    champion_onnx: bytes | None,
    policy: GatePolicy,
    breaking_change: bool = False,
    candidate: dict[str, Any] | None = None,
) -> GateReport:
    """Run every check on a candidate; a failed check is reported, never raised.

    `candidate` names what was gated in the report (default: the spec's model and run)."""
    c = CandidateUnderTest(spec, onnx_bytes, reference)
    breaks = (
        schema_breaks(champion.input_schema, spec.input_schema) + output_breaks(spec, champion)
        if champion is not None
        else []
    )
    checks = [
        _guarded("schema", lambda: check_schema(spec, champion, breaks, breaking_change)),
        _guarded("parity", lambda: check_parity(c, policy)),
        _guarded("metrics", lambda: check_metrics(c, champion, champion_onnx, not breaks, policy)),
        _guarded("segments", lambda: check_segments(c, policy)),
        _guarded("scenarios", lambda: check_scenarios(c)),
        _guarded("latency", lambda: check_latency(c, policy)),
    ]
    return GateReport(
        candidate=candidate or {"name": spec.name, "run_id": spec.run_id},
        champion_version=champion.version if champion is not None else None,
        checks=checks,
        policy=policy,
        at=now_iso(),
        breaking_change=breaking_change,
    )


@dataclass(frozen=True)
class GateRun:
    """A completed gate run: the report and where it was stored."""

    report: GateReport
    report_uri: str
    bundle: Bundle = field(repr=False)


def load_bundle(s3: Any, bucket: str, model: str, run_id: str) -> tuple[Bundle, pa.Table]:
    """The verified bundle and its reference table; anything unreadable is CandidateUnavailable."""
    try:
        bundle = read_bundle(s3, bucket, model, run_id)
    except ValidationError as exc:
        raise CandidateUnavailable(
            f"candidates/{model}/{run_id}/candidate.json is not a valid candidate spec: "
            f"{exc.error_count()} error(s)"
        ) from exc
    try:
        table = bundle.reference_table()
    except (pa.ArrowException, OSError) as exc:
        raise CandidateUnavailable(f"{bundle.uri}reference.parquet is not readable: {exc}") from exc
    return bundle, table


def load_champion(
    registry: RegistryReader, store: ModelStore, model: str
) -> tuple[Card | None, bytes | None]:
    """The production version's card and proven artifact, or (None, None) for a first version.

    An artifact that fails its integrity check raises ModelUnavailable: the gate does not
    quietly compare against a weaker figure when production itself is in doubt.
    """
    pointer = registry.pointer(model, "production")
    if pointer is None:
        return None, None
    card = registry.card(model, pointer.version)
    return card, store.fetch(card.artifact)


def validate_candidate(
    s3: Any,
    bucket: str,
    registry: RegistryReader,
    store: ModelStore,
    request: ValidationRequest,
    policy: GatePolicy,
) -> GateRun:
    """The validation step: read the bundle and the champion, gate, store `validation.json`."""
    if request.run_id is None:
        raise ValueError("validate_candidate needs a run_id")
    bundle, table = load_bundle(s3, bucket, request.model, request.run_id)
    champion, champion_onnx = load_champion(registry, store, request.model)
    report = run_gate(
        bundle.spec,
        bundle.onnx_bytes,
        table,
        champion,
        champion_onnx,
        policy,
        breaking_change=request.breaking_change,
    )
    uri = write_report(s3, bundle, report.as_dict())
    return GateRun(report, uri, bundle)
