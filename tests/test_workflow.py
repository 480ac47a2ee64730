"""The data stage through Snakemake: the offline demo and the real MATH files."""

import pandas as pd
import yaml

from conftest import REPO, snakemake
from nsr_study.data import read_jsonl

DATA_OUT = ["train.jsonl", "val.jsonl", "test.jsonl", "strata.csv", "strata.png", "benchmarks.csv"]


def test_demo_data_stage_runs_offline(tmp_path):
    targets = [f"results/data/{f}" for f in DATA_OUT]
    res = snakemake("--cores", "2", "-d", tmp_path, *targets, "--configfile", REPO / "config/demo.yaml")
    assert res.returncode == 0, res.stderr
    demo = yaml.safe_load((REPO / "config/demo.yaml").read_text())["data"]
    sizes = {s: len(read_jsonl(tmp_path / f"results/data/{s}.jsonl")) for s in ("train", "val", "test")}
    n_train, n_test = demo["synthetic"]["n_train"], demo["synthetic"]["n_test"]
    assert sizes["train"] + sizes["val"] == round(demo["train_fraction"] * n_train)
    sample, longer = round(demo["test_fraction"] * n_test), demo["synthetic"]["n_longer"]
    assert sizes == {"train": sizes["train"], "val": demo["val_size"], "test": sample + longer}
    # the demo's second test set: chains longer than any training problem's, after the sample
    test = read_jsonl(tmp_path / "results/data/test.jsonl")
    assert [r["benchmark"] for r in test] == ["math"] * sample + ["longer"] * longer
    assert {r["level"] for r in test[sample:]} == {"Level 6", "Level 7"}
    assert max(int(r["level"][-1]) for r in read_jsonl(tmp_path / "results/data/train.jsonl")) == 5
    assert pd.read_csv(tmp_path / "results/data/benchmarks.csv")["problems"].tolist() == [sample, longer]
    for rule in ("prepare_data", "prepare_test"):  # one split each
        assert (tmp_path / f"logs/data/{rule}.log").read_text().count("sampled") == 1
    strata = pd.read_csv(tmp_path / "results/data/strata.csv")
    assert set(strata["split"]) == {"train", "test"} and strata["val_rows"].sum() == demo["val_size"]


def test_local_math_through_the_workflow(tmp_path, math_dir):
    cfg = {"data": {"source": "local", "train_fraction": 0.25, "test_fraction": 1.0, "val_size": 100,
                    "local": {"train": str(math_dir / "train.jsonl"), "test": str(math_dir / "math500.jsonl")}}}
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/data/{f}" for f in DATA_OUT]
    res = snakemake("--cores", "2", "-d", tmp_path, *targets, "--configfile", tmp_path / "local.yaml")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "results/data"
    strata = pd.read_csv(out / "strata.csv")
    assert (strata["sampled_rows"] - strata["expected_rows"]).abs().max() <= 1
    assert len(read_jsonl(out / "test.jsonl")) == 500
    assert all(r["answer"] for s in ("train", "val", "test") for r in read_jsonl(out / f"{s}.jsonl"))
