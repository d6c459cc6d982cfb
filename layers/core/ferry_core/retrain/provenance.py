"""What a retraining run can truthfully say about where it ran: the lineage of the code.

- the source commit the stack was synthesized from (`FERRY_SOURCE_COMMIT`, set by infra from
  git at synth time; absent where no commit describes the code, e.g. the local platform);
- the image's dependency lock (`FERRY_LOCK_FILE`, set by the training image's Dockerfile: its
  presence is what says this process runs from the image's tree);
- the running image's digest, as Lambda resolved it when the function was deployed:
  `lambda:GetFunction` on the function itself returns `Code.ResolvedImageUri`
  (`repository@sha256:…`). Only a URI carrying a digest is recorded; outside an image (the
  local platform runs the repository's code in its own interpreter) nothing is asked and
  nothing is recorded, so no digest is ever guessed.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ferry_core.card import Lineage
from ferry_core.registry.lineage import library_versions
from ferry_core.store import sha256_hex

logger = logging.getLogger(__name__)

DIGEST_MARK = "@sha256:"
RunsOn = Literal["lambda", "sagemaker", "local"]


@dataclass(frozen=True)
class RunEnvironment:
    """Where a training run executes, and how long it has."""

    trained_on: RunsOn = "local"
    image_uri: str | None = None  # `repository@sha256:…` as the service resolved it
    seconds_left: float | None = None  # the run's own deadline (Lambda's remaining time)

    @property
    def image_digest(self) -> str | None:
        if self.image_uri and DIGEST_MARK in self.image_uri:
            return self.image_uri.rpartition("@")[2]
        return None


def in_image(lock_file: str | None) -> bool:
    """True when this process runs from the training image's tree (its lock is where the
    Dockerfile put it)."""
    return bool(lock_file) and Path(str(lock_file)).is_file()


def resolved_image(lambda_client: Any, function_name: str) -> str | None:
    """The running function's image as Lambda resolved it (`repository@sha256:…`), or None.

    A refusal or a URI without a digest records nothing (and is logged): lineage says what is
    known, never a guess."""
    try:
        code = lambda_client.get_function(FunctionName=function_name).get("Code", {})
    except Exception as exc:  # botocore's ClientError and connection errors alike
        logger.warning("cannot resolve the running image of %s: %s", function_name, exc)
        return None
    uri = code.get("ResolvedImageUri")
    if not isinstance(uri, str) or DIGEST_MARK not in uri:
        logger.warning("%s reports no image digest (%r)", function_name, uri)
        return None
    return uri


def lambda_environment(
    lambda_client: Any, function_name: str, lock_file: str | None, seconds_left: float
) -> RunEnvironment:
    """A Lambda invocation: from the image (digest resolved), or the local platform's."""
    if not in_image(lock_file):
        return RunEnvironment("local", None, seconds_left)
    return RunEnvironment("lambda", resolved_image(lambda_client, function_name), seconds_left)


def run_lineage(
    env: RunEnvironment,
    *,
    source_commit: str | None,
    source_dirty: bool | None,
    lock_file: str | None,
    trained_by: str,
) -> Lineage:
    """The code half of a retrained version's lineage (the data half is added by training)."""
    lock_hash = sha256_hex(Path(str(lock_file)).read_bytes()) if in_image(lock_file) else None
    return Lineage(
        git_commit=source_commit,
        git_dirty=source_dirty if source_commit else None,
        dependency_lock_sha256=lock_hash,
        python_version=platform.python_version(),
        libraries=library_versions(),
        trained_by=trained_by,
        trained_on=env.trained_on,
        image_uri=env.image_uri if env.image_digest else None,
        image_digest=env.image_digest,
    )
