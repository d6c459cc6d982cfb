"""The source revision a synthesis describes, carried to the functions that record lineage.

`build_app` reads git once per synthesis and puts the commit (and whether the checkout had
uncommitted changes to tracked files) in the app's context, so every stack of one synthesis,
dev and prod alike, gets the same values and their templates stay identical apart from
infra/config.py. Without a checkout (a CodeBuild synth of a source archive) CodeBuild's
`CODEBUILD_RESOLVED_SOURCE_VERSION` names the commit. Where neither exists, or where the
synthesis is cached across commits (the local platform's), nothing is set: a retrained
version then records no commit rather than a wrong one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from constructs import Construct

COMMIT_CONTEXT = "ferry:sourceCommit"
DIRTY_CONTEXT = "ferry:sourceDirty"


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def source_context(repo: Path) -> dict[str, str]:
    """The app context naming the commit `repo` is at (empty when none is known)."""
    commit = _git(repo, "rev-parse", "HEAD")
    if commit:
        status = _git(repo, "status", "--porcelain", "--untracked-files=no")
        dirty = {} if status is None else {DIRTY_CONTEXT: "true" if status else "false"}
        return {COMMIT_CONTEXT: commit, **dirty}
    built = os.environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION")
    return {COMMIT_CONTEXT: built, DIRTY_CONTEXT: "false"} if built else {}


def source_variables(scope: Construct) -> dict[str, str]:
    """`FERRY_SOURCE_COMMIT` / `FERRY_SOURCE_DIRTY` from the app context, when it names one."""
    commit = scope.node.try_get_context(COMMIT_CONTEXT)
    if not commit:
        return {}
    dirty = scope.node.try_get_context(DIRTY_CONTEXT)
    return {
        "FERRY_SOURCE_COMMIT": str(commit),
        **({"FERRY_SOURCE_DIRTY": str(dirty)} if dirty is not None else {}),
    }
