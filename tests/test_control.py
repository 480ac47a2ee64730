"""The positive control end to end: on a task where narrowing is built in (config/control.yaml,
docs/demo.md "The positive control"), the pipeline must find it. Snakemake runs the control
reduced to what the two designed findings need (.test/config/control-ci.yaml: PSR and NSR, one
seed), and on the test set `rare` the findings must say, after Holm, that PSR narrows
(``psr_narrows``) and that NSR keeps the breadth PSR loses (``nsr_breadth_vs_psr``), while the
strategy table shows the mechanism: PSR's samples use the rare strategy less than the base
model's. With either claim's contrast sign flipped, or the tag miscounted, this fails."""

import pandas as pd

from conftest import REPO, snakemake

OVERLAYS = [REPO / "config/demo.yaml", REPO / "config/control.yaml", REPO / ".test/config/control-ci.yaml"]


def test_the_pipeline_detects_the_narrowing_built_into_the_control(tmp_path):
    res = snakemake("--cores", "2", "-d", tmp_path, "--configfile", *OVERLAYS, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    findings = pd.read_csv(tmp_path / "results/tables/findings.csv")
    rare = findings[findings["benchmark"] == "rare"].set_index("claim")
    for claim in ("psr_narrows", "nsr_breadth_vs_psr"):
        assert rare.loc[claim, "verdict_holm"] == "supported", rare.loc[claim].to_dict()
    share = pd.read_csv(tmp_path / "results/tables/strategy_share.csv")
    b = share[(share["strategy"] == "B") & (share["benchmark"] == "math")].set_index("objective")["share"]
    assert b["PSR"] < b["base"] / 2, b.to_dict()
    assert (tmp_path / "results/figures/strategy_share.png").stat().st_size > 0
