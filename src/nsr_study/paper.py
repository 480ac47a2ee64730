"""Our pass@k beside the paper's Table 1 (Zhu et al. 2025 v1, Qwen2.5-Math-7B), for a run of the
paper's own model (config/paper.yaml): per objective, test set and k, our estimate with its
interval, the paper's number, and the difference.

The reference numbers live in one file, ``zhu2025_table1.yaml``, with where they were copied
from. Our interval is over test problems only (± z × SE; with several seeds the mean over seeds
and the SE of that mean, sqrt(Σ SE²) / seeds): the paper gives no interval, so "inside" asks
whether its number falls within our sampling noise, nothing more. What differs between the two
(grader, PPO, settings) is listed in ``DIFFERENCES`` and in the figure's caption.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import yaml

REFERENCE = Path(__file__).with_name("zhu2025_table1.yaml")
DIFFERENCES = (
    "grader: the paper grades with its grader.math_equal (eval.py), this pipeline with math-verify; "
    "the two disagree on some answers, so a few points of difference can be the grader alone",
    "PPO: in the paper's table, not run here (this pipeline has no value model)",
    "settings: config/paper.yaml follows the paper's released scripts, but the implementation (verl vs this "
    "trainer), the sampling seeds, and anything set outside those scripts differ; the paper reports one run",
    "answer length: the paper's evaluation stopped at the model's 4,096 positions (4,096 - prompt new tokens), "
    "config/paper.yaml at 3,072 new tokens",
)


def load_reference(path: str | Path = REFERENCE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def reference_table(ref: dict) -> pd.DataFrame:
    """The paper's table in long form: benchmark, objective, k, paper (a fraction, as ours)."""
    rows = [{"benchmark": b, "objective": m, "k": k, "paper": v / 100}
            for b, methods in ref["pass_at_k"].items() for m, vals in methods.items()
            for k, v in zip(ref["k"], vals, strict=True)]
    return pd.DataFrame(rows)


def ours(passk: pd.DataFrame, model: str, confidence: float) -> pd.DataFrame:
    """Our pass@k of one model per test set, objective and k: mean over seeds, its SE and interval."""
    d = passk[passk["model"] == model]
    g = d.groupby(["benchmark", "objective", "k"])
    out = pd.DataFrame({"ours": g["pass_at_k"].mean(), "seeds": g["pass_at_k"].size(),
                        "ours_se": g["pass_at_k_se"].apply(lambda s: float(np.sqrt((s**2).sum())) / len(s))})
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    out["ours_lo"] = out["ours"] - z * out["ours_se"]
    out["ours_hi"] = out["ours"] + z * out["ours_se"]
    return out.reset_index()


def comparison(passk: pd.DataFrame, model: str, ref: dict, confidence: float = 0.95) -> pd.DataFrame:
    """Every cell of the paper's table beside ours (NaN where we have none: PPO, a test set or k
    not evaluated): difference = ours − paper, and whether the paper's number is inside our interval."""
    table = reference_table(ref).merge(ours(passk, model, confidence), on=["benchmark", "objective", "k"], how="left")
    table["difference"] = table["ours"] - table["paper"]
    inside = (table["ours_lo"] <= table["paper"]) & (table["paper"] <= table["ours_hi"])
    table["paper_inside"] = inside.astype("boolean").mask(table["ours"].isna())
    table.insert(0, "model", model)
    return table[["model", "benchmark", "objective", "k", "paper", "ours", "ours_se", "ours_lo", "ours_hi", "seeds",
                  "difference", "paper_inside"]]


def comparison_figure(table: pd.DataFrame, ref: dict, confidence: float, stem) -> list[Path]:
    """One panel per test set: the paper's pass@k (dashed, open markers) and ours (solid, band =
    our interval) per objective, k on a log2 axis."""
    from nsr_study.figures import _color, _label, _save, plt

    benches = list(ref["pass_at_k"])
    fig, axes = plt.subplots(1, len(benches), figsize=(4.6 * len(benches), 4.0), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        d = table[table["benchmark"] == bench]
        for obj in ref["methods"]:
            r = d[d["objective"] == obj].sort_values("k")
            color = "black" if obj == "PPO" else _color(obj)
            label = ref["methods"][obj] if obj == "PPO" else _label(obj)
            ax.plot(r["k"], r["paper"], ls="--", marker="o", mfc="none", ms=4, color=color, lw=1,
                    label=f"{label} (paper)")
            mine = r.dropna(subset=["ours"])
            if not mine.empty:
                ax.plot(mine["k"], mine["ours"], ls="-", marker="o", ms=3, color=color, label=f"{label} (ours)")
                ax.fill_between(mine["k"], mine["ours_lo"], mine["ours_hi"], color=color, alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set(title=f"{ref['benchmarks'][bench]} ({bench})", xlabel="k (samples per problem)", ylabel="pass@k")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6.5, ncol=2)
    fig.suptitle(f"{table['model'].iloc[0]} vs the paper's Table 1 ({ref['model']}); "
                 f"band: our {100 * confidence:g} % interval over test problems", fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)
