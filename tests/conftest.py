"""Shared paths and helpers. Real MATH data is read from ../shared/data/math (never copied
into the project); tests that need it skip with the reason when it is absent."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MATH = Path(os.environ.get("NSR_SHARED_MATH", REPO.parent / "shared" / "data" / "math"))


@pytest.fixture(scope="session")
def math_dir() -> Path:
    if not (SHARED_MATH / "train.jsonl").is_file():
        pytest.skip(f"real MATH data not found at {SHARED_MATH} (set NSR_SHARED_MATH to its folder)")
    return SHARED_MATH


@pytest.fixture(scope="session")
def math_train(math_dir):
    from nsr_study.data import read_jsonl

    return read_jsonl(math_dir / "train.jsonl")


def snakemake(*args, cwd=REPO, timeout=300) -> subprocess.CompletedProcess:
    """Run the Snakemake CLI of this interpreter's environment on the repository's Snakefile."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
