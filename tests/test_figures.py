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
