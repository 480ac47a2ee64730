"""A config without a hub source runs with no network call (nsr_study.offline)."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, demo_config, study_config
from nsr_study.offline import OFFLINE_ENV, offline_env

DATA_STAGE = """
import sys
from datasets import load_dataset
from nsr_study import data
from nsr_study.synthetic import generate

out = sys.argv[1]
train, test = generate(200, 50, seed=1)
data.write_jsonl(train, out + "/train.jsonl", fields=None)
data.write_jsonl(test, out + "/test.jsonl", fields=None)
rows = {s: data.load_rows({"path": f"{out}/{s}.jsonl"}, s) for s in ("train", "test")}
splits, _, _ = data.prepare(rows["train"], rows["test"], 0.5, 1.0, 20, 0)
data.write_jsonl(splits["train"], out + "/sampled.jsonl")
# the loader of the hub path and of the models' libraries, on a local file
assert load_dataset("json", data_files=out + "/test.jsonl", split="train").num_rows == 50
"""


def test_offline_only_when_nothing_comes_from_the_hub(tmp_path):
    assert offline_env(demo_config()) == OFFLINE_ENV  # synthetic data, tiny models built here
    assert offline_env(study_config()) == {}  # MATH and Qwen2.5 from the hub
    local = demo_config()
    local["models"] = [{"name": "q", "id": str(tmp_path)}]
    assert offline_env(local) == OFFLINE_ENV
    local["models"].append({"name": "h", "id": "Qwen/Qwen2.5-0.5B"})
    assert offline_env(local) == {}


def test_data_stage_makes_no_network_call(tmp_path):
    """Under strace in a network namespace of its own: not one connect() to an IP address."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a network namespace of its own")
    if shutil.which("strace") is None:
        pytest.skip("needs strace(1) to see connect() calls (apt-get install strace)")
    env = os.environ | offline_env(demo_config()) | {"PYTHONPATH": str(REPO / "src")}
    trace = tmp_path / "connect.trace"
    res = subprocess.run(["unshare", "-n", "strace", "-f", "-qq", "-e", "trace=connect", "-o", trace,
                          sys.executable, "-c", DATA_STAGE, tmp_path], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    connects = [ln for ln in trace.read_text().splitlines() if "AF_INET" in ln]
    assert connects == [], connects[:5]


def test_a_test_set_from_the_hub_needs_the_hub():
    demo = demo_config()
    demo["benchmarks"] = demo["benchmarks"] + [{"name": "amc23", "hub": {"id": "TianHongZXY/amc23", "split": "test"},
                                               "gold": "answer"}]
    assert offline_env(demo) == {}
