"""Gating a registered version: the same checks as a candidate's, from what registration stored.

A version registered by hand (`ferry register`) or from a bundle keeps, in
`models/{model}/v{n}/`, its artifact and its parity reference (`reference.parquet`: the
validation rows, the source pipeline's scores and the labels), both pinned by sha256 on the
card. The gate reads them back, proves both hashes, and compares the version with the
production version live now; the result names that champion, so a later promotion can tell
a current result from a stale one.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ferry_core.card import Card
from ferry_core.errors import FerryError
from ferry_core.registry.reader import RegistryReader
from ferry_core.retrain.candidate import CandidateSpec
from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.report import GateReport
from ferry_core.retrain.gate.validate import load_champion, run_gate
from ferry_core.store import ModelStore, parse_s3_uri, sha256_hex

if TYPE_CHECKING:
    from ferry_core.registry.governance import Governance
    from ferry_core.registry.outcome import Outcome


class ReferenceUnavailable(FerryError):
    """A registered version has no usable parity reference: the gate cannot run on it."""

    code = "reference_unavailable"


def spec_of(card: Card) -> CandidateSpec:
    """The candidate spec a registered card stands for (the gate's view of a model)."""
    if not card.artifact.reference_sha256:
        raise ReferenceUnavailable(
            f"{card.name} v{card.version} was registered without reference rows "
            "(reference.parquet): the gate has nothing to measure it on; register it again "
            "with its validation data"
        )
    return CandidateSpec(
        name=card.name,
        run_id=f"v{card.version}",
        description=card.description,
        input_schema=card.input_schema,
        output=card.output,
        lineage=card.lineage,
        metrics=card.metrics,
        baseline=card.baseline,
        model_sha256=card.artifact.sha256,
        model_size=card.artifact.size,
        reference_sha256=card.artifact.reference_sha256,
    )


def read_reference(s3: Any, card: Card) -> pa.Table:
    """The version's reference rows, proven to hash to the card's `reference_sha256`."""
    uri = card.artifact.reference_uri
    if not uri:
        raise ReferenceUnavailable(f"{card.name} v{card.version} names no reference.parquet")
    bucket, key = parse_s3_uri(uri)
    try:
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise ReferenceUnavailable(f"{uri} does not exist") from exc
    if sha256_hex(data) != card.artifact.reference_sha256:
        raise ReferenceUnavailable(f"{uri} does not hash to the sha256 its card records")
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise ReferenceUnavailable(f"{uri} is not readable: {exc}") from exc


def validate_version(
    s3: Any,
    registry: RegistryReader,
    store: ModelStore,
    model: str,
    version: int,
    policy: GatePolicy,
) -> GateReport:
    """Gate registered `version` of `model` against the production version live now."""
    card = registry.card(model, version)
    spec = spec_of(card)
    onnx_bytes = store.fetch(card.artifact)  # ModelUnavailable if it no longer hashes
    table = read_reference(s3, card)
    champion, champion_onnx = load_champion(registry, store, model)
    return run_gate(
        spec,
        onnx_bytes,
        table,
        champion,
        champion_onnx,
        policy,
        candidate={"name": model, "version": version},
    )


def validate_and_record(
    gov: Governance,
    s3: Any,
    store: ModelStore,
    policy: GatePolicy,
    model: str,
    version: int,
    *,
    actor: str,
) -> Outcome:
    """The `ValidateVersion` machine's two steps in one process (the local demo, tests):
    gate the version against the current champion, record the result on it."""
    report = validate_version(s3, gov.reader, store, model, version, policy)
    return gov.record_validation(model, version, report.as_dict(), actor=actor)
