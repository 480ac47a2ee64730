"""The positive control end to end: on a task where narrowing is built in (config/control.yaml,
docs/demo.md "The positive control"), the pipeline must find it. Snakemake runs the control
reduced to PSR and NSR with one seed (.test/config/control-ci.yaml), and on the test set `rare`
the findings must say, after Holm, that PSR narrows (``psr_narrows``) and that NSR keeps more
breadth than PSR (``nsr_breadth_vs_psr``), having both raised pass@1 on the clause-free test set
`math`, while the strategy table shows the mechanism: PSR's samples use the rare strategy less
than half as often as the base model's, NSR's more often than PSR's. With PSR's or NSR's
advantages negated or zero, or the tag miscounted, this fails."""

import pandas as pd

from conftest import REPO, snakemake

OVERLAYS = [REPO / "config/demo.yaml", REPO / "config/control.yaml", REPO / ".test/config/control-ci.yaml"]


def test_the_pipeline_detects_the_effect_built_into_the_control(tmp_path):
    res = snakemake("--cores", "2", "-d", tmp_path, "--configfile", *OVERLAYS, timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    findings = pd.read_csv(tmp_path / "results/tables/findings.csv").set_index(["benchmark", "claim"])
    # both objectives learned the task (an NSR that never updates would keep the base model's breadth)
    for claim in [("math", "psr_raises_pass1"), ("math", "nsr_raises_pass1"), ("rare", "psr_narrows"),
                  ("rare", "nsr_breadth_vs_psr")]:
        assert findings.loc[claim, "verdict_holm"] == "supported", (claim, findings.loc[claim].to_dict())
    share = pd.read_csv(tmp_path / "results/tables/strategy_share.csv")
    b = share[(share["strategy"] == "B") & (share["benchmark"] == "math")].set_index("objective")["share"]
    assert b["PSR"] < b["base"] / 2 and b["NSR"] > b["PSR"], b.to_dict()
    assert (tmp_path / "results/figures/strategy_share.png").stat().st_size > 0
