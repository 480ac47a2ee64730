"""The paper's Table 1 as reference data and our pass@k beside it, on a fake run of the paper's
model (nsr_study.paper), and config/paper.yaml: it plans and adds the comparison."""

import pandas as pd
import pytest

from conftest import REPO, snakemake
from nsr_study import paper


def test_reference_holds_table_1_with_its_source():
    ref = paper.load_reference()
    assert ref["model"] == "Qwen/Qwen2.5-Math-7B" and ref["k"] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert "2506.01347" in ref["source"]["paper"] and "Table 1" in ref["source"]["table"]
    table = paper.reference_table(ref)
    assert len(table) == 3 * 6 * 9  # MATH, AIME 2025, AMC23 × Base, GRPO, PPO, PSR, NSR, W-REINFORCE × k
    at = table.set_index(["benchmark", "objective", "k"])["paper"]
    # spot checks against the paper's table as printed
    assert at["math", "base", 1] == pytest.approx(0.632) and at["aime2025", "base", 256] == pytest.approx(0.467)
    assert at["aime2025", "W_REINFORCE", 256] == pytest.approx(0.567) and at["amc23", "NSR", 256] == 1.0
    assert at["math", "PPO", 1] == pytest.approx(0.766)


def fake_run(model="qwen2.5-math-7b") -> pd.DataFrame:
    """passk.csv of a fake run of the paper's model: the paper's numbers + 0.01 with SE 0.02 on
    MATH and AIME; GRPO with two seeds on AMC23 (−0.03 and +0.01, SE 0.03 and 0.04); no PPO."""
    rows = []
    for r in paper.reference_table(paper.load_reference()).itertuples():
        if r.objective == "PPO":
            continue
        if r.benchmark == "amc23" and r.objective == "GRPO":
            rows += [dict(model=model, benchmark=r.benchmark, objective=r.objective, seed=s, k=r.k,
                          pass_at_k=r.paper + d, pass_at_k_se=se) for s, d, se in ((0, -0.03, 0.03), (1, 0.01, 0.04))]
        else:
            rows.append(dict(model=model, benchmark=r.benchmark, objective=r.objective, seed=0, k=r.k,
                             pass_at_k=r.paper + 0.01, pass_at_k_se=0.02))
    rows.append(dict(model="other", benchmark="math", objective="base", seed=None, k=1, pass_at_k=0.0, pass_at_k_se=0.1))
    return pd.DataFrame(rows)


def test_comparison_of_a_fake_run_computed_by_hand(tmp_path):
    ref = paper.load_reference()
    table = paper.comparison(fake_run(), "qwen2.5-math-7b", ref, confidence=0.95)
    assert len(table) == 3 * 6 * 9 and set(table["model"]) == {"qwen2.5-math-7b"}
    ppo = table[table["objective"] == "PPO"]
    assert ppo["ours"].isna().all() and ppo["difference"].isna().all() and ppo["paper_inside"].isna().all()
    one = table[(table["benchmark"] == "math") & (table["objective"] == "NSR") & (table["k"] == 8)].iloc[0]
    assert one["paper"] == pytest.approx(0.901) and one["ours"] == pytest.approx(0.911)
    assert one["difference"] == pytest.approx(0.01) and one["ours_se"] == pytest.approx(0.02)
    assert one["ours_lo"] == pytest.approx(0.911 - 1.959964 * 0.02, abs=1e-6) and bool(one["paper_inside"])
    two = table[(table["benchmark"] == "amc23") & (table["objective"] == "GRPO") & (table["k"] == 1)].iloc[0]
    # two seeds: mean of −0.03 and +0.01 → −0.01; SE of the mean sqrt(0.03² + 0.04²) / 2 = 0.025
    assert two["seeds"] == 2 and two["difference"] == pytest.approx(-0.01) and two["ours_se"] == pytest.approx(0.025)
    assert two["ours_hi"] == pytest.approx(0.617 - 0.01 + 1.959964 * 0.025, abs=1e-6)
    narrow = paper.comparison(fake_run().assign(pass_at_k_se=0.001), "qwen2.5-math-7b", ref)
    assert not narrow.dropna(subset=["ours"])["paper_inside"].astype(bool).any()  # 0.01 off, interval ± 0.002
    paths = paper.comparison_figure(table, ref, 0.95, tmp_path / "paper_comparison")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 20000 for p in paths)


def test_paper_config_plans_every_job_and_the_comparison():
    res = snakemake("-n", "--cores", "all", "--resources", "gpu=8", "--configfile", REPO / "config" / "paper.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    for line in ("paper_comparison        1", "train                   4", "evaluate_base           1"):
        assert line in res.stdout, res.stdout[-3000:]
    assert "results/figures/paper_comparison_qwen2.5-math-7b.png" in res.stdout


def test_paper_config_is_priced():
    from nsr_study.plan import count_benchmark_problems, count_test_problems
    from conftest import study_config

    config = study_config("config/paper.yaml")
    assert config["models"][0]["gpus"] == 8 and config["evaluate"]["n"] == 256
    assert count_test_problems(config["data"]) + count_benchmark_problems(config["benchmarks"]) == 5000 + 30 + 40
