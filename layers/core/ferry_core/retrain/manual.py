"""A candidate built on the user's machine (`ferry register`): built from the user's files as
`ferry_core.onboarding.use_cases` does, uploaded under `candidates/{model}/manual-…/` exactly as
a training run leaves its bundle, for the governance function's register route to register.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from ferry_core.onboarding import intake
from ferry_core.onboarding.use_cases import RegistrationRequest, build_candidate, request_lineage
from ferry_core.retrain.candidate import Bundle, write_bundle


def manual_run_id() -> str:
    """`manual-<utc stamp>-<8 hex>`: a bundle built on the user's machine, unique per upload."""
    return f"manual-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def upload_candidate(
    req: RegistrationRequest, s3: Any, bucket: str, actor: str, run_id: str | None = None
) -> Bundle:
    """Build the candidate from `req`'s files and upload it as a bundle for registration.

    Raises IntakeError for a request that cannot be served (see `RegistrationRequest.problem`)
    or unreadable files. `actor` is who built it (the lineage's `trained_by`); the registrant
    is whoever calls the register route, as the API verifies them.
    """
    problem = req.problem()
    if problem:
        raise intake.IntakeError(problem)
    trainer = req.trainer_files()  # read and checked before anything is built or uploaded
    built, data, valid_ref = build_candidate(req, s3)
    evidence = {"validation_data": valid_ref.as_dict()} if valid_ref else {}
    return write_bundle(
        s3,
        bucket,
        built,
        req.name,
        run_id or manual_run_id(),
        request_lineage(req, data, actor),
        description=req.description,
        training=evidence,
        trainer=trainer,
    )
