"""The `metrics` check: candidate AUC not below the champion's beyond a tolerance, on
the same rows scored by the champion itself where it can, else against its card's figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry_core.card import Card
from ferry_core.errors import FerryError
from ferry_core.retrain.gate.policy import GatePolicy
from ferry_core.retrain.gate.reference import CandidateUnderTest, GateInputError, roc_auc
from ferry_core.serving.inference import OnnxModel
from ferry_core.serving.validator import InstanceValidator


def check_metrics(
    c: CandidateUnderTest,
    champion: Card | None,
    champion_onnx: bytes | None,
    compatible: bool,
    policy: GatePolicy,
) -> dict[str, Any]:
    """Candidate AUC vs the champion's on the same rows (or its card's figure, said so)."""
    y = c.reference.require_labels()
    auc = roc_auc(y, c.scores)
    if auc is None:
        raise GateInputError("candidate AUC is undefined: the reference labels hold one class")
    tol = policy.metric_tolerance
    if champion is None:
        return {
            "passed": True,
            "message": f"first version: candidate AUC {auc:.4f} on {y.size} rows, no champion",
            "candidate_auc": auc,
            "rows": int(y.size),
            "tolerance": tol,
        }
    v = champion.version
    card_auc = champion.metrics.get("overall", {}).get("auc")
    same, note = None, ""
    if not compatible:
        note = "schemas incompatible"
    elif champion_onnx is None:
        note = "no champion artifact given"
    else:
        try:
            same = _same_rows(c, y, champion, champion_onnx)
        except FerryError as exc:
            note = f"champion v{v} could not score the rows ({exc.message})"
        else:
            note = "" if same else f"champion v{v} accepts too few of the rows for an AUC"
    if same:
        auc, champ_auc, rows, refused = same
        figures = {"rows": rows, "champion_refused_rows": refused, "champion_source": "scored"}
        where = "on the same rows"
    else:
        champ_auc = card_auc
        figures = {"rows": int(y.size), "champion_source": "card"}
        where = "from its card (its own validation rows)"
        note += ": compared with the AUC on the champion's card; "
    if champ_auc is None:
        return {
            "passed": True,
            "message": f"{note}champion v{v} records no AUC; candidate AUC {auc:.4f}, "
            "nothing to compare with",
            "candidate_auc": auc,
            "champion_auc": None,
            "delta": None,
            "tolerance": tol,
            "champion_version": v,
            **figures,
        }
    delta = auc - champ_auc
    passed = auc >= champ_auc - tol
    verdict = "within" if passed else "worse than"
    return {
        "passed": passed,
        "message": f"{note}candidate AUC {auc:.4f} vs champion v{v} {champ_auc:.4f} {where} "
        f"(delta {delta:+.4f}, {verdict} tolerance {tol:g})",
        "candidate_auc": auc,
        "champion_auc": champ_auc,
        "delta": delta,
        "tolerance": tol,
        "champion_version": v,
        "champion_card_auc": card_auc,
        **figures,
    }


def _same_rows(
    c: CandidateUnderTest, y: np.ndarray, champion: Card, champion_onnx: bytes
) -> tuple[float, float, int, int] | None:
    """(candidate AUC, champion AUC, rows, rows the champion refused) on the reference rows the
    champion accepts, scored through its own validator and graph: what production would have
    answered. None when those rows cannot give both an AUC."""
    model = OnnxModel(champion, champion_onnx)
    names = [f.name for f in champion.input_schema.features]
    rows = c.reference.rows
    verdict = InstanceValidator(champion.input_schema).check(
        [{k: r[k] for k in names} for r in rows]
    )
    if not verdict.rows:
        return None
    champ_scores, _ = model.predict_rows(verdict.rows)
    idx = np.asarray(verdict.row_index, dtype=np.int64)
    cand_auc = roc_auc(y[idx], c.scores[idx])
    champ_auc = roc_auc(y[idx], champ_scores)
    if cand_auc is None or champ_auc is None:
        return None
    return cand_auc, champ_auc, int(idx.size), len(rows) - int(idx.size)
