"""Error bars: sd over seeds, or the standard error over problems with one seed."""

import pandas as pd
import pytest

from nsr_study.figures import _mean_err


def test_one_seed_uses_its_standard_error_several_seeds_their_sd():
    one = pd.DataFrame({"pass_at_1": [0.4], "pass_at_1_se": [0.05]})
    assert _mean_err(one, "pass_at_1") == (pytest.approx(0.4), pytest.approx(0.05))
    two = pd.DataFrame({"pass_at_1": [0.4, 0.6], "pass_at_1_se": [0.05, 0.05]})
    assert _mean_err(two, "pass_at_1") == (pytest.approx(0.5), pytest.approx(0.1414, abs=1e-4))
    assert _mean_err(pd.DataFrame({"x": [0.3]}), "x") == (pytest.approx(0.3), 0.0)


def test_findings_verdicts_colours_each_claim_and_model_by_its_verdict(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from nsr_study import figures

    table = pd.DataFrame([
        {"claim": "nsr_raises_pass1", "model": "small", "parameters": 10, "verdict": "supported",
         "verdict_holm": "supported", "estimate": 0.2, "lo": 0.1, "hi": 0.3},
        {"claim": "nsr_raises_pass1", "model": "large", "parameters": 100, "verdict": "contradicted",
         "verdict_holm": "inconclusive", "estimate": -0.2, "lo": -0.3, "hi": -0.1},
        {"claim": "psr_narrows", "model": "small", "parameters": 10, "verdict": "inconclusive",
         "verdict_holm": "inconclusive", "estimate": 0.0, "lo": -0.1, "hi": 0.1},
    ]).assign(covers="test problems only (one seed)", benchmark="math")
    drawn, save = {}, figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, stem: save(drawn.setdefault("fig", fig), stem))
    paths = figures.findings_verdicts(table, 0.95, tmp_path / "findings_verdicts")
    assert [p.name for p in paths] == ["findings_verdicts.png", "findings_verdicts.svg"]
    ax = drawn["fig"].axes[0]
    cells = {(round(p.get_x()), round(p.get_y())): p.get_facecolor()[:3] for p in ax.patches
             if isinstance(p, plt.Rectangle) and p.get_width() == 1 and p.get_height() == 1}
    rgb = lambda c: tuple(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5))  # noqa: E731
    assert cells == {(0, 0): pytest.approx(rgb(figures.VERDICT_COLORS["supported"])),
                     (1, 0): pytest.approx(rgb(figures.VERDICT_COLORS["contradicted"])),
                     (0, 1): pytest.approx(rgb(figures.VERDICT_COLORS["inconclusive"]))}
    texts = {t.get_text() for t in ax.texts}
    assert "+0.200\n[+0.100, +0.300]" in texts and "-0.200\n[-0.300, -0.100]\nHolm: inconclusive" in texts
    assert "over test problems only (one seed)" in ax.get_title()
    assert "nsr_raises_pass1\nNSR − base on pass@1 > 0" in [t.get_text() for t in ax.get_yticklabels()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["small", "large"]


def test_strategy_share_stacks_each_strategy_per_objective(tmp_path, monkeypatch):
    """results/figures/strategy_share.png: one bar per group (base model, then each objective),
    the strategies stacked in order A, B, neither, their heights the mean share over seeds."""
    from nsr_study import figures

    rows = [("base", None, {"A": 0.9, "B": 0.1, "other": 0.0})] + [
        ("PSR", s, {"A": 1.0 - b, "B": b, "other": 0.0}) for s, b in ((0, 0.0), (1, 0.02))] + [
        ("NSR", s, {"A": 0.8, "B": 0.1 + s / 10, "other": 0.1 - s / 10}) for s in (0, 1)]
    table = pd.DataFrame([{"model": "tiny-c", "objective": o, "seed": s, "benchmark": "rare", "strategy": k, "share": v}
                          for o, s, shares in rows for k, v in shares.items()])
    drawn, save = {}, figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, stem: save(drawn.setdefault("fig", fig), stem))
    paths = figures.strategy_share(table, ["PSR", "NSR"], tmp_path / "strategy_share")
    assert [p.name for p in paths] == ["strategy_share.png", "strategy_share.svg"] and all(p.exists() for p in paths)
    ax = drawn["fig"].axes[0]
    bars = [(round(p.get_x() + p.get_width() / 2), round(p.get_y(), 3), round(p.get_height(), 3)) for p in ax.patches]
    assert bars == [(0, 0, 0.9), (1, 0, 0.99), (2, 0, 0.8),  # A
                    (0, 0.9, 0.1), (1, 0.99, 0.01), (2, 0.8, 0.15),  # B on top of A
                    (0, 1.0, 0.0), (1, 1.0, 0.0), (2, 0.95, 0.05)]  # neither
    assert [t.get_text() for t in ax.get_xticklabels()] == ["base model", figures._label("PSR"), figures._label("NSR")]
