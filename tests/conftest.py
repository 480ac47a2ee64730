"""Shared paths and helpers. Real MATH data is read from ../shared/data/math (never copied
into the project); tests that need it skip with the reason when it is absent."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_MATH = Path(os.environ.get("NSR_SHARED_MATH", REPO.parent / "shared" / "data" / "math"))
MICRO_CONFIG = REPO / ".test" / "config" / "micro.yaml"

# torch.compile's kernel cache (default /tmp/torchinductor_<user>, shared by every run on the
# machine) is keyed without ATEN_CPU_CAPABILITY: with torch 2.13 a graph cached under the native
# AVX-512 path and loaded under avx2 decodes garbage, and the reverse aborts the process. The
# suite compiles into a folder of its own (subprocesses inherit it), so neither .ci/run's second
# kernel path nor an earlier run on the machine hands it kernels built for another path.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="nsr-tests-inductor-")
atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

# The modules whose assertions hold a float result or a sampled draw against a bar, so a CPU
# with other kernels (another instruction set: other rounding, other sampled tokens) could
# move them across it. .ci/run runs them a second time under another torch kernel path
# (ATEN_CPU_CAPABILITY); docs/development.md gives each bar's derivation.
FLOAT_PATH_MODULES = {"test_learning", "test_distributed", "test_update", "test_rollout", "test_tiny",
                      "test_objectives", "test_control"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__ in FLOAT_PATH_MODULES:
            item.add_marker(pytest.mark.float_path)


def _local_benchmarks(config: dict) -> tuple[dict, list[str]]:
    """``config`` with its local test sets' paths made absolute (from the repository root, as
    the file writes them), and without the ones that are absent: (config, why each was left out)."""
    kept, missing = [], []
    for b in config.get("benchmarks", []):
        if "local" in b:
            path = (REPO / b["local"]).resolve()
            if not path.is_file():
                missing.append(f"test set {b['name']} not found at {path} (docs/data.md, test sets)")
                continue
            b = b | {"local": str(path)}
        kept.append(b)
    return config | {"benchmarks": kept}, missing


# The micro run's config, and why a test set of it is left out (tests that need it skip with this).
MICRO, MICRO_MISSING = _local_benchmarks(yaml.safe_load(MICRO_CONFIG.read_text()))


@pytest.fixture(scope="session")
def math_dir() -> Path:
    if not (SHARED_MATH / "train.jsonl").is_file():
        pytest.skip(f"real MATH data not found at {SHARED_MATH} (set NSR_SHARED_MATH to its folder)")
    return SHARED_MATH


@pytest.fixture(scope="session")
def math_train(math_dir):
    from nsr_study.data import read_jsonl

    return read_jsonl(math_dir / "train.jsonl")


def study_config(*overlays: str) -> dict:
    """config/config.yaml overlaid with ``overlays`` (paths relative to the repo), checked,
    with the schema's defaults: the one source of every default value."""
    from nsr_study.config import load_config

    paths = [REPO / "config" / "config.yaml", *(REPO / o for o in overlays)]
    return load_config(paths, REPO / "workflow" / "schemas" / "config.schema.yaml")


def demo_config() -> dict:
    return study_config("config/demo.yaml")


def tiny_spec(**overrides):
    """The demo's tiny-model defaults (schema) with ``overrides``."""
    from nsr_study.tiny import TinySpec

    return TinySpec(**(demo_config()["models"][0]["tiny"] | overrides))


def snakemake(*args, cwd=REPO, timeout=300, env=None) -> subprocess.CompletedProcess:
    """Run the Snakemake CLI of this interpreter's environment on the repository's Snakefile."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


# The micro run's pool of GPUs: two ids that no device has, so its GPU jobs (device: auto) claim
# them through nsr_study.devices like real ones and still run on the CPU on any host (CUDA
# ignores an id it does not know, and every id after it).
MICRO_GPUS = ["GPU-fake-0", "GPU-fake-1"]


@pytest.fixture(scope="session")
def micro(tmp_path_factory) -> Path:
    """A folder where the micro demo (.test/config/micro.yaml with absolute test-set paths, as
    micro.yaml) ran end to end:
    run once per session and shared by the pipeline and report tests. Run as on a node with
    two GPUs (`--resources gpu=2`, MICRO_GPUS, locks in gpu-locks/)."""
    root = tmp_path_factory.mktemp("pipeline")
    (root / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ",".join(MICRO_GPUS), "NSR_GPU_LOCK_DIR": str(root / "gpu-locks")}
    res = snakemake("--cores", "2", "--resources", "gpu=2", "-d", root, "--configfile", root / "micro.yaml",
                    timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return root


def tiny_cell_dir(root: Path, **spec) -> Path:
    """``root`` with train/val jsonl (synthetic, data-stage fields) and ``model/``: a random
    tiny Qwen2 with its offline tokenizer, saved as the pipeline loads models. No SFT."""
    import torch

    from nsr_study.data import write_jsonl
    from nsr_study.synthetic import generate
    from nsr_study.tiny import build_model, build_tokenizer, corpus

    train, val = generate(64, 8, seed=0)
    for split, recs in (("train", train), ("val", val)):
        for i, r in enumerate(recs):
            r.update(id=f"{split}-{i}", benchmark="math", subject=r["type"])
        write_jsonl(recs, root / f"{split}.jsonl")
    tokenizer = build_tokenizer(corpus(train, demo_config()["prompt"], tiny_spec()), 300)
    torch.manual_seed(0)
    build_model(tiny_spec(**spec), tokenizer).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root
