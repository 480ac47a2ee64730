"""The study's figures, drawn from the aggregated tables only (never typed by hand).

Each objective keeps one colour in every figure; the base model is grey. Bands and error bars
are ± one standard deviation over seeds (absent with a single seed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = {"base": "#7f7f7f", "GRPO": "#1f77b4", "PSR": "#2ca02c", "NSR": "#d62728", "W_REINFORCE": "#9467bd"}
LABELS = {"base": "base model", "W_REINFORCE": "W-REINFORCE"}


def _label(objective: str) -> str:
    return LABELS.get(objective, objective)


def _save(fig, stem: str | Path) -> list[Path]:
    paths = [Path(f"{stem}.png"), Path(f"{stem}.svg")]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def _models_by_size(df: pd.DataFrame) -> list[str]:
    return df.drop_duplicates("model").sort_values("parameters")["model"].tolist()


def smooth(values: pd.Series, window: int) -> pd.Series:
    """Trailing moving average over ``window`` points (the first points average what exists)."""
    return values.rolling(window, min_periods=1).mean()


def training_curves(train: pd.DataFrame, objectives: list[str], window: int, stem) -> list[Path]:
    """Validation accuracy (top) and training reward (bottom) vs step, one panel per model."""
    models = _models_by_size(train)
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False, sharex="col")
    for col, model in enumerate(models):
        for row, (metric, title) in enumerate((("val_accuracy", "validation accuracy (greedy)"),
                                               ("reward_mean", "training reward"))):
            ax = axes[row][col]
            for obj in objectives:
                d = train[(train["model"] == model) & (train["objective"] == obj)].dropna(subset=[metric])
                if d.empty:
                    continue
                per_seed = d.pivot_table(index="step", columns="seed", values=metric).sort_index()
                per_seed = per_seed.apply(lambda s: smooth(s.dropna(), window).reindex(s.index))
                mean, std = per_seed.mean(axis=1), per_seed.std(axis=1)
                ax.plot(mean.index, mean, color=COLORS[obj], label=_label(obj), lw=1.8)
                if per_seed.shape[1] > 1:
                    ax.fill_between(mean.index, mean - std, mean + std, color=COLORS[obj], alpha=0.18, lw=0)
            ax.set_ylabel(title)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(model)
            else:
                ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Training curves (moving average over {window} points; band: ± 1 sd over seeds)", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


def _mean_sd(d: pd.DataFrame, metric: str) -> tuple[float, float]:
    vals = d[metric].dropna()
    return float(vals.mean()), float(vals.std()) if len(vals) > 1 else 0.0


def _final_panels(final: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, title) of the two final metrics each final-performance figure shows."""
    return [("greedy_accuracy", "greedy accuracy"), ("pass_at_max_k", f"pass@{int(final['max_k'].max())}")]


def final_performance(final: pd.DataFrame, objectives: list[str], stem) -> list[Path]:
    """Grouped bars per model: base model and each objective, greedy accuracy and pass@max k."""
    models = _models_by_size(final)
    groups = ["base"] + objectives
    fig, axes = plt.subplots(1, 2, figsize=(max(7, 2.2 * len(models) * 2), 4.2))
    width = 0.8 / len(groups)
    for ax, (metric, title) in zip(axes, _final_panels(final)):
        for i, obj in enumerate(groups):
            stats = [_mean_sd(final[(final["model"] == m) & (final["objective"] == obj)], metric) for m in models]
            x = np.arange(len(models)) + (i - (len(groups) - 1) / 2) * width
            sds = [s[1] for s in stats]
            ax.bar(x, [s[0] for s in stats], width, yerr=sds if any(sds) else None, capsize=3, color=COLORS[obj],
                   label=_label(obj))
        ax.set_xticks(np.arange(len(models)), models)
        ax.set_ylabel(f"test {title}")
        ax.set_ylim(0, min(1.0, 1.25 * final[metric].max()) or 1.0)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Final performance on the test set (error bars: ± 1 sd over seeds)", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


def passk_curves(passk: pd.DataFrame, objectives: list[str], stem) -> list[Path]:
    """pass@k vs k (log2 axis), one panel per model, base model and each objective."""
    models = _models_by_size(passk)
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        for obj in ["base"] + objectives:
            d = passk[(passk["model"] == model) & (passk["objective"] == obj)]
            if d.empty:
                continue
            g = d.groupby("k")["pass_at_k"]
            mean, std = g.mean(), g.std().fillna(0)
            ax.plot(mean.index, mean, marker="o", ms=3, color=COLORS[obj], label=_label(obj),
                    ls="--" if obj == "base" else "-")
            ax.fill_between(mean.index, mean - std, mean + std, color=COLORS[obj], alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_title(model)
        ax.set_xlabel("k (samples per problem)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test pass@k")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("pass@k (unbiased estimator; band: ± 1 sd over seeds)", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


def model_size(final: pd.DataFrame, objectives: list[str], stem) -> list[Path]:
    """Greedy accuracy and pass@max k vs parameters (log axis), one line per objective."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (metric, title) in zip(axes, _final_panels(final)):
        for obj in ["base"] + objectives:
            d = final[final["objective"] == obj]
            if d.empty:
                continue
            g = d.groupby("parameters")[metric]
            mean, std = g.mean(), g.std().fillna(0)
            ax.errorbar(mean.index, mean, yerr=std, marker="o", capsize=3, color=COLORS[obj], label=_label(obj),
                        ls="--" if obj == "base" else "-")
        ax.set_xscale("log")
        ax.set_xlabel("model parameters")
        ax.set_ylabel(f"test {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Effect of model size", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)
