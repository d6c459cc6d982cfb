"""Register a candidate bundle as the next version: the files copied from `candidates/` to
`models/{model}/v{n}/`, the card built from the bundle's spec, and the `register` audit entry.

One path for a retraining run's candidate (the workflow's `register_candidate` step, with the
validation gate's report) and for one `ferry register` built on the user's machine (the
register route, with the build's quick checks); both run in the governance function, as the
verified actor.
"""

from __future__ import annotations

from typing import Any

from ferry_core.card import Artifact, Card
from ferry_core.clock import now_iso
from ferry_core.registry.governance import Governance, Outcome
from ferry_core.registry.registration import (
    RegistrationRefused,
    model_prefix,
    put_object,
    quick_checks,
    refuse_failed_parity,
)
from ferry_core.registry.writer import card_json
from ferry_core.retrain.candidate import Bundle
from ferry_core.trainer_files import with_trainer


def registered_from(gov: Governance, model: str, run_id: str) -> Card | None:
    """The version a candidate bundle already became (a retried registration finds it)."""
    if not gov.reader.model_exists(model):
        return None
    for card in gov.reader.versions(model):
        if (card.validation or {}).get("candidate", {}).get("run_id") == run_id:
            return card
    return None


def register_bundle(
    gov: Governance,
    s3: Any,
    bucket: str,
    bundle: Bundle,
    actor: str,
    reason: str,
    validation: dict[str, Any] | None,
) -> tuple[Card, Outcome]:
    """Register a verified candidate bundle as the next version of its model.

    The files are copied to `models/{model}/v{n}/` and the card pins them; `validation` is
    the gate's report (a retraining run) or the build's quick checks (`ferry register`), and
    records which candidate it came from. The registrant is `actor`, the verified caller.
    """
    spec = bundle.spec
    version = gov.writer.allocate_version(spec.name)
    prefix = model_prefix(spec.name, version)
    model_key, ref_key = f"{prefix}/model.onnx", f"{prefix}/reference.parquet"
    vid = put_object(s3, bucket, model_key, bundle.onnx_bytes, "application/octet-stream")
    ref_uri = None
    if bundle.reference_bytes is not None:
        ref_type = "application/vnd.apache.parquet"
        put_object(s3, bucket, ref_key, bundle.reference_bytes, ref_type)
        ref_uri = f"s3://{bucket}/{ref_key}"
    lineage = spec.lineage
    if bundle.trainer is not None:  # the next retraining runs it: kept beside the version
        trainer_uri = bundle.trainer.put(s3, bucket, prefix, put=put_object)
        lineage = with_trainer(lineage, bundle.trainer.ref, trainer_uri)
    if validation is not None:
        validation = {**validation, "candidate": {"run_id": spec.run_id, "uri": bundle.uri}}
    card = Card(
        name=spec.name,
        version=version,
        description=spec.description,
        input_schema=spec.input_schema,
        output=spec.output,
        artifact=Artifact(
            uri=f"s3://{bucket}/{model_key}",
            s3_version_id=vid,
            sha256=spec.model_sha256,
            size=spec.model_size,
            reference_uri=ref_uri,
            reference_sha256=spec.reference_sha256,
        ),
        lineage=lineage.model_copy(update={"registered_at": now_iso(), "registered_by": actor}),
        metrics=spec.metrics,
        baseline=spec.baseline,
        validation=validation,
    )
    put_object(s3, bucket, f"{prefix}/card.json", card_json(card), "application/json")
    return card, gov.register(card, actor, reason)


def register_candidate(
    gov: Governance, s3: Any, bucket: str, bundle: Bundle, actor: str, reason: str = ""
) -> tuple[Card, Outcome]:
    """A candidate built on the user's machine (`ferry register`): its quick checks become
    the card's validation; failed parity is refused before anything is written."""
    spec = bundle.spec
    parity = spec.metrics.get("parity")
    refuse_failed_parity(parity)
    if registered_from(gov, spec.name, spec.run_id) is not None:
        raise RegistrationRefused(f"candidate {spec.name}/{spec.run_id} is already registered")
    validation = quick_checks(parity, spec.metrics, len(spec.input_schema.features))
    evidence = spec.training.get("validation_data")
    if validation is not None and evidence:
        validation["data"] = {"validation_data": evidence}
    why = reason or f"candidate {spec.run_id}"
    return register_bundle(gov, s3, bucket, bundle, actor, why, validation)
