"""Property 5: artifacts are what the registry says, and a model file cannot read outside itself.

Corruptions. credit-risk v1 is production; v2 is registered (different bytes, same scores).
Each trial flips one random byte of v2's model file where a load would read it: the object
version the card pins in S3 (moto's stored bytes, as bit rot leaves them with a stale S3
checksum, or as an attacker with storage access rewrites them with a matching one), and the
scoring function's cached file. Every trial must end in a refused load of v2 through the real
handler (503 `model_unavailable`), a refused promotion of v2, and production answering from
v1 with the same scores as before. Corrupting only the cached file must heal (the store
re-reads the pinned version) and serve v2's true scores. Restoring the bytes at the end must
make v2 load: the refusals were the corruption's doing, nothing else.

Malicious ONNX files. External-data tensors that name an absolute path, a `../` path, or a
symlink inside the model folder pointing outside it, placed everywhere a tensor can sit
(`ferry_bench.onnx_placements`: initializers, sparse parts, every attribute kind, nested
If/Loop/Scan bodies, model-local functions and their attribute defaults, training graphs).
Each is served twice through the real handler: from bytes (S3 → ModelStore → OnnxModel) and
from a file in the model folder (the store's cache on disk). Each must be refused by Ferry's
guard, before onnxruntime sees it. Proof that nothing outside the folder was read: the
kernel's inotify (`IN_OPEN`/`IN_ACCESS` on the outside folder and the sentinel file, which sees
onnxruntime's C++ reads as well as Python's) and a `sys.addaudithook` on `open`; both
detectors are shown to work by two controls (a Python read of the sentinel, onnxruntime reading
external data that sits inside its own folder).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry_bench.malicious_onnx import Inotify, OpenAudit, corpus, model_file
from ferry_bench.properties import Mode, PropertyResult, prop
from ferry_bench.running_platform import small_model, valid_instances

MODEL = "credit-risk"
EVIL = "evil"
GUARD_MESSAGE = "references external data files"  # ferry_core.serving.onnx_guard's refusal
SENTINEL = b"FERRY-SENTINEL--" + b"\x00\x00\x80\x3f" * 4  # a marker, then 4 float32 ones


# -- a harness around the real handler under moto -----------------------------------------------


@dataclass
class ScoringHarness:
    """The scoring handler, moto's clients and the resources, with v1 and v2 registered."""

    handler: Any
    boto: dict[str, Any]
    res: Any
    cache_dir: Path
    v1: Any
    v2: Any
    governance: Any

    def predict(self, version: int | None = None, model: str = MODEL) -> tuple[int, dict]:
        from ferry_local.events import LambdaContext, http_api_event

        query = {"version": str(version)} if version is not None else None
        body = json.dumps({"instances": valid_instances()[:20]})
        event = http_api_event(
            "POST", f"/v1/models/{model}/predict", body, query, routes=self.handler.ROUTES
        )
        response = self.handler.lambda_handler(event, LambdaContext())
        return response["statusCode"], json.loads(response["body"])

    def fresh_service(self) -> None:
        """A new container: no model loaded in memory (the disk cache stays)."""
        self.handler.service.cache_clear()


@contextlib.contextmanager
def harness() -> Iterator[ScoringHarness]:
    from ferry_core.card import Lineage
    from ferry_core.registry.governance import connect
    from ferry_core.registry.registration import register_built
    from ferry_core.registry.writer import RegistryWriter
    from ferry_local.handlers import load_handler
    from ferry_local.moto_stack import clients, local_aws

    built = small_model()
    # v2: the same graph with another doc string, so other bytes and sha256, same scores.
    import onnx

    graph = onnx.load_from_string(built.onnx_bytes)
    graph.doc_string = "credit-risk v2 (reliability property 5)"
    built_v2 = dataclasses.replace(built, onnx_bytes=graph.SerializeToString())
    with tempfile.TemporaryDirectory() as tmp, local_aws(tmp) as res:
        boto = clients()
        writer = RegistryWriter(boto["dynamodb"], res.registry_table)
        v1 = register_built(built, MODEL, boto["s3"], res.model_bucket, writer, Lineage())
        writer.set_stage(MODEL, "production", v1.version, None, actor="reliability")
        v2 = register_built(built_v2, MODEL, boto["s3"], res.model_bucket, writer, Lineage())
        governance = connect(
            dynamodb=boto["dynamodb"],
            s3=boto["s3"],
            events=None,
            registry_table=res.registry_table,
            audit_table=res.audit_table,
            anchor_bucket=res.anchor_bucket,
            cache_dir=f"{tmp}/governance-cache",
        )
        handler = load_handler("scoring")
        handler.service.cache_clear()
        level = handler.logger.log_level
        handler.logger.setLevel(logging.CRITICAL)  # refusals log a line each
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                cache = Path(res.environment(tmp)["MODEL_CACHE_DIR"])
                yield ScoringHarness(handler, boto, res, cache, v1, v2, governance)
        finally:
            handler.logger.setLevel(level)
            handler.service.cache_clear()


def _pinned_key(h: ScoringHarness, card: Any) -> Any:
    """moto's stored object version that `card.artifact` pins (what a GetObject returns)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    from ferry_core.store import parse_s3_uri

    bucket, key = parse_s3_uri(card.artifact.uri)
    versions = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[bucket].keys.getlist(key)
    (stored,) = [v for v in versions if v.version_id == card.artifact.s3_version_id]
    return stored


def _store_bytes(stored: Any, data: bytes, checksum: bool) -> None:
    """Replace the stored bytes; with `checksum`, also the S3 checksum (an attacker's rewrite)."""
    stored.value = data
    if checksum and stored.checksum_algorithm == "SHA256":
        stored.checksum_value = base64.b64encode(hashlib.sha256(data).digest()).decode()


# -- corruptions --------------------------------------------------------------------------------

CORRUPTION_KINDS = ("S3 bit rot", "S3 rewrite", "S3 rewrite + cached file")


@dataclass
class Corruptions:
    tried: int = 0
    refused: int = 0
    refused_by: Counter[str] = field(default_factory=Counter)
    promotions_refused: int = 0
    production_served: int = 0
    production_checks: int = 0
    cache_only_tried: int = 0
    cache_only_healed: int = 0
    restored_serves: bool = False


def corruption_trials(
    h: ScoringHarness, trials: int, cache_only: int, seed: int = 8
) -> Corruptions:
    """`trials` refused corruptions, `cache_only` healed ones, then the restoring control."""
    from ferry_core.errors import PromotionRefused

    rng = random.Random(seed)
    out = Corruptions()
    status, baseline = h.predict()
    if status != 200 or baseline.get("version") != h.v1.version:
        raise RuntimeError(f"production does not serve v1 before the trials: {status} {baseline}")
    scores = [p["score"] for p in baseline["predictions"]]
    stored = _pinned_key(h, h.v2)
    pristine = stored.value
    cached = h.cache_dir / f"{h.v2.artifact.sha256}.onnx"

    def flipped() -> bytes:
        data = bytearray(pristine)
        at = rng.randrange(len(data))
        data[at] ^= rng.randrange(1, 256)
        return bytes(data)

    def production_ok() -> None:
        out.production_checks += 1
        status, body = h.predict()
        got = [p["score"] for p in body.get("predictions", [])]
        if status == 200 and body.get("version") == h.v1.version and got == scores:
            out.production_served += 1

    for i in range(trials):
        kind = CORRUPTION_KINDS[i % len(CORRUPTION_KINDS)]
        bad = flipped()
        _store_bytes(stored, bad, checksum=kind != "S3 bit rot")
        if kind.endswith("cached file"):
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(flipped())
        out.tried += 1
        status, body = h.predict(version=h.v2.version)
        if status == 503 and body.get("error") == "model_unavailable":
            out.refused += 1
            message = body.get("message", "")
            out.refused_by[
                "card sha256"
                if "integrity check failed" in message
                else "S3 checksum"
                if "checksum" in message.lower()
                else "other"
            ] += 1
        try:
            h.governance.promote(MODEL, h.v2.version, actor="reliability")
        except PromotionRefused:
            out.promotions_refused += 1
        production_ok()
    _store_bytes(stored, pristine, checksum=True)
    for _ in range(cache_only):
        out.cache_only_tried += 1
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(flipped())
        h.fresh_service()
        status, body = h.predict(version=h.v2.version)
        got = [p["score"] for p in body.get("predictions", [])]
        served = status == 200 and body.get("version") == h.v2.version and got == scores
        if served and cached.read_bytes() == pristine:
            out.cache_only_healed += 1
        production_ok()
    cached.unlink(missing_ok=True)
    h.fresh_service()
    status, body = h.predict(version=h.v2.version)
    out.restored_serves = status == 200 and body.get("version") == h.v2.version
    return out


# -- malicious ONNX files -----------------------------------------------------------------------


@dataclass
class Malicious:
    files: int = 0
    loads: int = 0
    refused: int = 0
    refused_by_guard: int = 0
    outside_opens_kernel: int = 0
    outside_opens_python: int = 0
    controls_seen: int = 0
    controls: int = 0
    kernel_witness: bool = False
    failures: list[str] = field(default_factory=list)


def malicious_loads(h: ScoringHarness, work: Path) -> Malicious:
    """Serve every corpus file from bytes and from a file; watch the outside folder."""
    from ferry_core.card import Artifact
    from ferry_core.registry.writer import RegistryWriter
    from ferry_core.store import sha256_hex

    out = Malicious()
    model_dir = h.cache_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    outside = work / "outside"
    outside.mkdir()
    sentinel = outside / "secret.bin"
    sentinel.write_bytes(SENTINEL)
    (model_dir / "weights.bin").symlink_to(sentinel)
    (model_dir / "sub").mkdir()
    files = corpus(outside)
    writer = RegistryWriter(h.boto["dynamodb"], h.res.registry_table)
    s3 = h.boto["s3"]

    def card_for(data: bytes, uri: str, version_id: str | None) -> Any:
        version = writer.allocate_version(EVIL)
        card = h.v1.model_copy(
            update={
                "name": EVIL,
                "version": version,
                "artifact": Artifact(
                    uri=uri, s3_version_id=version_id, sha256=sha256_hex(data), size=len(data)
                ),
            }
        )
        writer.put_version(card)
        return card

    kernel: Inotify | None
    try:
        kernel = Inotify()
        kernel.watch(outside)
        kernel.watch(sentinel)
        out.kernel_witness = True
    except (OSError, AttributeError):
        kernel = None  # not Linux: the audit hook alone
    audit = OpenAudit(outside)
    try:
        _controls(out, kernel, audit, sentinel, work)
        if kernel is not None:
            kernel.events()
        audit.paths.clear()
        audit.recording = True
        for label, data in files:
            out.files += 1
            key = f"models/{EVIL}/{out.files}/model.onnx"
            vid = s3.put_object(Bucket=h.res.model_bucket, Key=key, Body=data).get("VersionId")
            from_bytes = card_for(data, f"s3://{h.res.model_bucket}/{key}", vid)
            # From a file: only the copy in the model folder can serve it (no such S3 object).
            from_file = card_for(data, f"s3://{h.res.model_bucket}/absent/{out.files}", None)
            (model_dir / f"{from_file.artifact.sha256}.onnx").write_bytes(data)
            for how, card in (("from bytes", from_bytes), ("from a file", from_file)):
                h.fresh_service()
                out.loads += 1
                status, body = h.predict(version=card.version, model=EVIL)
                if status == 503 and body.get("error") == "model_unavailable":
                    out.refused += 1
                    if GUARD_MESSAGE in body.get("message", ""):
                        out.refused_by_guard += 1
                    else:
                        out.failures.append(f"{label} {how}: refused, not by the guard: {body}")
                else:
                    out.failures.append(f"{label} {how}: {status} {str(body)[:160]}")
        audit.recording = False
        if kernel is not None:
            seen = kernel.events()
            out.outside_opens_kernel = len(seen)
            out.failures.extend(f"kernel saw a read outside the folder: {p}" for p in seen[:5])
        out.outside_opens_python = len(audit.paths)
        out.failures.extend(f"Python opened {p}" for p in audit.paths[:5])
    finally:
        audit.close()
        if kernel is not None:
            kernel.close()
    return out


def _controls(
    out: Malicious, kernel: Inotify | None, audit: OpenAudit, sentinel: Path, work: Path
) -> None:
    """Show each detector sees what it must: otherwise its zero would prove nothing."""
    import numpy as np
    import onnxruntime as ort

    # 1. A Python read of the sentinel: both the kernel and the audit hook see it.
    if kernel is not None:
        kernel.events()
    audit.paths.clear()
    audit.recording = True
    with sentinel.open("rb") as fh:
        fh.read()
    audit.recording = False
    out.controls += 1
    kernel_saw = kernel is None or any(p.endswith("secret.bin") for p in kernel.events())
    if kernel_saw and audit.paths:
        out.controls_seen += 1
    else:
        out.failures.append("control: a read of the sentinel went unseen by a detector")
    audit.paths.clear()
    if kernel is None:
        return
    # 2. onnxruntime (C++) reading external data inside its own folder: the kernel sees it.
    legit = work / "legit"
    legit.mkdir()
    (legit / "weights.bin").write_bytes(SENTINEL)
    (legit / "model.onnx").write_bytes(model_file("initializer", "weights.bin"))
    kernel.watch(legit)
    kernel.events()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(legit / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    (y,) = session.run(None, {"x": np.zeros((4,), dtype=np.float32)})
    out.controls += 1
    if any(p.endswith("weights.bin") for p in kernel.events()) and y.tolist() == [1.0] * 4:
        out.controls_seen += 1
    else:
        out.failures.append("control: onnxruntime's read of its external data went unseen")


# -- the property -------------------------------------------------------------------------------


def judge(c: Corruptions, m: Malicious, result: PropertyResult) -> None:
    """Figures and violations from both parts (separate so a test can feed it bad runs)."""
    result.figures.update(
        {
            "corruptions tried": c.tried,
            "corruptions refused (503)": c.refused,
            "refused by card sha256": c.refused_by["card sha256"],
            "refused by S3 checksum": c.refused_by["S3 checksum"],
            "corrupted promotions refused": c.promotions_refused,
            "previous version served": f"{c.production_served}/{c.production_checks}",
            "cache-only corruptions healed": f"{c.cache_only_healed}/{c.cache_only_tried}",
            "restored v2 serves": c.restored_serves,
            "malicious files": m.files,
            "malicious loads refused": f"{m.refused}/{m.loads}",
            "refused by Ferry's guard": m.refused_by_guard,
            "outside reads (kernel)": m.outside_opens_kernel,
            "outside reads (Python)": m.outside_opens_python,
            "detector controls seen": f"{m.controls_seen}/{m.controls}",
        }
    )
    v = result.violations
    if c.refused != c.tried:
        v.append(f"{c.tried - c.refused} of {c.tried} corrupted loads were not refused")
    if c.refused_by["other"]:
        v.append(f"{c.refused_by['other']} corruptions refused for another reason")
    if c.promotions_refused != c.tried:
        v.append(f"{c.tried - c.promotions_refused} corrupted versions could be promoted")
    if c.production_served != c.production_checks:
        missed = c.production_checks - c.production_served
        v.append(f"production did not serve v1's scores {missed} time(s) during the trials")
    if c.cache_only_healed != c.cache_only_tried:
        v.append(f"{c.cache_only_tried - c.cache_only_healed} corrupted cache files not healed")
    if not c.restored_serves:
        v.append("v2 did not load once its bytes were restored: the refusals prove nothing")
    if m.refused_by_guard != m.loads or m.refused != m.loads:
        v.append(
            f"{m.loads - m.refused_by_guard} of {m.loads} malicious loads not refused by the guard"
        )
    if m.outside_opens_kernel or m.outside_opens_python:
        v.append(
            f"files outside the model folder were opened: kernel {m.outside_opens_kernel}, "
            f"Python {m.outside_opens_python}"
        )
    if m.controls_seen != m.controls or not m.controls:
        v.append("a detector control failed: the zero outside reads are not evidence")
    v.extend(m.failures[:10])


def run(mode: Mode, result: PropertyResult) -> tuple[Corruptions, Malicious]:
    trials = mode.size(100, 500)
    cache_only = mode.size(10, 50)
    with harness() as h, tempfile.TemporaryDirectory() as work:
        corruptions = corruption_trials(h, trials, cache_only)
        malicious = malicious_loads(h, Path(work))
    judge(corruptions, malicious, result)
    return corruptions, malicious


@prop(5, "Artifacts are what the registry says")
def check(mode: Mode, result: PropertyResult) -> None:
    """Single-byte corruptions are refused and v1 keeps serving; malicious ONNX reads nothing."""
    run(mode, result)
