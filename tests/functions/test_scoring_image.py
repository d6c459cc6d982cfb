"""The scoring image holds runtime needs only: no CDK, no scikit-learn, no training stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("scikit-learn", "skl2onnx", "onnx", "pandas", "pyarrow", "aws-cdk-lib", "moto")


def _pins(lock: Path) -> set[str]:
    names = set()
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==", line)
        if m:
            names.add(m.group(1).lower())
    return names


def test_runtime_lock_excludes_training_and_cdk_packages() -> None:
    pins = _pins(ROOT / "requirements" / "runtime.txt")
    assert {"onnxruntime", "aws-lambda-powertools", "pydantic", "numpy", "boto3"} <= pins
    assert not pins & set(TRAINING_ONLY)


def test_every_pin_is_exact() -> None:
    for lock in (ROOT / "requirements").glob("*.txt"):
        for line in lock.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                assert re.match(r"^[A-Za-z0-9_.\-\[\],]+==[^=<>~*]+( ;.*)?$", line), (lock, line)


def test_handler_imports_and_serves_without_training_packages() -> None:
    """Given an interpreter that refuses every training/CDK module, the handler still serves."""
    blocked = ["sklearn", "skl2onnx", "onnx", "pandas", "pyarrow", "aws_cdk", "moto", "jsii"]
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not in the scoring image: " + name)
sys.meta_path.insert(0, Block())
import functions.scoring.handler as h
status, body = h.ROUTES["GET /health"]({{}})
assert status == 200, body
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_dockerfile_builds_from_the_lambda_base_image_with_the_runtime_lock() -> None:
    dockerfile = (ROOT / "functions" / "scoring" / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM public.ecr.aws/lambda/python:3.11" in dockerfile
    assert "requirements/runtime.txt" in dockerfile and "layers/core" in dockerfile
    assert 'CMD ["handler.lambda_handler"]' in dockerfile
