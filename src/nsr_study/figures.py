"""The study's figures, drawn from the aggregated tables only (never typed by hand).

Each objective keeps one colour in every figure; the base model is grey. Bands and error bars
show the uncertainty of what is plotted: ± 1 standard deviation over seeds when there are
several, and with a single seed ± 1 standard error over the evaluated problems (the ``*_se``
columns), so even a one-seed figure shows which differences exceed their noise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nsr_study.objectives import OBJECTIVES  # noqa: E402

BASE_COLOR = "#7f7f7f"


def _label(objective: str) -> str:
    return "base model" if objective == "base" else OBJECTIVES[objective].label


def _color(objective: str) -> str:
    return BASE_COLOR if objective == "base" else OBJECTIVES[objective].color


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


UNCERTAINTY = "± 1 sd over seeds, or ± 1 SE over problems with one seed"
CURVES = (("val_pass_rate", "validation pass rate (sampled)"), ("val_accuracy", "validation accuracy (greedy)"),
          ("reward_mean", "training reward"))


def _smoothed(d: pd.DataFrame, column: str, window: int) -> pd.DataFrame:
    """step × seed table of ``column``, each seed's series smoothed."""
    per_seed = d.pivot_table(index="step", columns="seed", values=column).sort_index()
    return per_seed.apply(lambda s: smooth(s.dropna(), window).reindex(s.index))


def training_curves(train: pd.DataFrame, objectives: list[str], window: int, stem) -> list[Path]:
    """Sampled and greedy validation accuracy and training reward vs step, one column per model."""
    models = _models_by_size(train)
    fig, axes = plt.subplots(len(CURVES), len(models), figsize=(4.2 * len(models), 9), squeeze=False, sharex="col")
    for col, model in enumerate(models):
        for row, (metric, title) in enumerate(CURVES):
            ax = axes[row][col]
            for obj in objectives:
                d = train[(train["model"] == model) & (train["objective"] == obj)].dropna(subset=[metric])
                if d.empty:
                    continue
                per_seed = _smoothed(d, metric, window)
                mean = per_seed.mean(axis=1)
                if per_seed.shape[1] > 1:
                    err = per_seed.std(axis=1)
                elif f"{metric}_se" in d:
                    err = _smoothed(d, f"{metric}_se", window).iloc[:, 0]
                else:
                    err = None
                ax.plot(mean.index, mean, color=_color(obj), label=_label(obj), lw=1.8)
                if err is not None:
                    ax.fill_between(mean.index, mean - err, mean + err, color=_color(obj), alpha=0.18, lw=0)
            ax.set_ylabel(title)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(model)
            else:
                ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Training curves (moving average over {window} points; band: {UNCERTAINTY})", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


def _mean_err(d: pd.DataFrame, metric: str) -> tuple[float, float]:
    """Mean over seeds and its uncertainty: sd over seeds, or the row's standard error over
    problems when there is one seed (0 when neither exists)."""
    vals = d[metric].dropna()
    if len(vals) > 1:
        return float(vals.mean()), float(vals.std())
    se = d[f"{metric}_se"].dropna() if f"{metric}_se" in d else []
    return float(vals.mean()), float(se.iloc[0]) if len(se) else 0.0


def _by(d: pd.DataFrame, key: str, metric: str) -> tuple[pd.Series, pd.Series]:
    """``_mean_err`` of ``metric`` for each value of ``key``: (means, uncertainties)."""
    stats = {k: _mean_err(dk, metric) for k, dk in d.groupby(key)}
    return pd.Series({k: m for k, (m, _) in stats.items()}), pd.Series({k: e for k, (_, e) in stats.items()})


def _final_panels(final: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, title) of the final metrics each final-performance figure shows."""
    return [("greedy_accuracy", "greedy accuracy"), ("pass_at_1", "pass@1"),
            ("pass_at_max_k", f"pass@{int(final['max_k'].max())}")]


def _benchmarks(df: pd.DataFrame) -> list[str]:
    """The test sets of a table, ``math`` (the config's first) first, then by name."""
    names = sorted(set(df["benchmark"]))
    return sorted(names, key=lambda b: b != "math")


def final_performance(final: pd.DataFrame, objectives: list[str], stem) -> list[Path]:
    """Grouped bars per model: base model and each objective, greedy accuracy, pass@1 and pass@max k;
    one row of panels per test set."""
    models = _models_by_size(final)
    groups = ["base"] + objectives
    benches = _benchmarks(final)
    ncols = len(_final_panels(final))
    fig, axes = plt.subplots(len(benches), ncols, figsize=(max(10, 2.0 * len(models) * ncols), 4.2 * len(benches)),
                             squeeze=False)
    width = 0.8 / len(groups)
    for row, bench in zip(axes, benches):
        fb = final[final["benchmark"] == bench]
        for ax, (metric, title) in zip(row, _final_panels(fb)):
            for i, obj in enumerate(groups):
                stats = [_mean_err(fb[(fb["model"] == m) & (fb["objective"] == obj)], metric) for m in models]
                x = np.arange(len(models)) + (i - (len(groups) - 1) / 2) * width
                errs = [e for _, e in stats]
                ax.bar(x, [m for m, _ in stats], width, yerr=errs if any(errs) else None, capsize=3,
                       color=_color(obj), label=_label(obj))
            ax.set_xticks(np.arange(len(models)), models)
            ax.set_ylabel(f"{bench}: test {title}")
            ax.set_ylim(0, min(1.0, 1.25 * fb[metric].max()) or 1.0)
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Final performance per test set (error bars: {UNCERTAINTY})", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


def passk_curves(passk: pd.DataFrame, objectives: list[str], stem) -> list[Path]:
    """pass@k vs k (log2 axis), one panel per test set (rows) and model (columns), base model and
    each objective."""
    models = _models_by_size(passk)
    benches = _benchmarks(passk)
    fig, axes = plt.subplots(len(benches), len(models), figsize=(4.2 * len(models), 3.8 * len(benches)),
                             squeeze=False, sharey="row")
    for row, bench in zip(axes, benches):
        for ax, model in zip(row, models):
            for obj in ["base"] + objectives:
                d = passk[(passk["benchmark"] == bench) & (passk["model"] == model) & (passk["objective"] == obj)]
                if d.empty:
                    continue
                mean, std = _by(d, "k", "pass_at_k")
                ax.plot(mean.index, mean, marker="o", ms=3, color=_color(obj), label=_label(obj),
                        ls="--" if obj == "base" else "-")
                ax.fill_between(mean.index, mean - std, mean + std, color=_color(obj), alpha=0.15, lw=0)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{model} · {bench}")
            ax.set_xlabel("k (samples per problem)")
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{bench}: test pass@k")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"pass@k per test set (unbiased estimator; band: {UNCERTAINTY})", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


def model_size(final: pd.DataFrame, objectives: list[str], stem) -> list[Path]:
    """Greedy accuracy, pass@1 and pass@max k vs parameters (log axis), one line per objective;
    one row of panels per test set."""
    benches = _benchmarks(final)
    ncols = len(_final_panels(final))
    fig, axes = plt.subplots(len(benches), ncols, figsize=(4.5 * ncols, 3.8 * len(benches)), squeeze=False)
    for row, bench in zip(axes, benches):
        fb = final[final["benchmark"] == bench]
        for ax, (metric, title) in zip(row, _final_panels(fb)):
            for obj in ["base"] + objectives:
                d = fb[fb["objective"] == obj]
                if d.empty:
                    continue
                mean, std = _by(d, "parameters", metric)
                ax.errorbar(mean.index, mean, yerr=std, marker="o", capsize=3, color=_color(obj), label=_label(obj),
                            ls="--" if obj == "base" else "-")
            ax.set_xscale("log")
            ax.set_xlabel("model parameters")
            ax.set_ylabel(f"{bench}: test {title}")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Effect of model size per test set (error bars: {UNCERTAINTY})", fontsize=11)
    fig.tight_layout()
    return _save(fig, stem)


VERDICT_COLORS = {"supported": "#a6dba0", "contradicted": "#f4a582", "inconclusive": "#e0e0e0"}


def findings_verdicts(table: pd.DataFrame, confidence: float, stem) -> list[Path]:
    """One cell per claim × (test set, model) (findings.csv): colour = verdict, text = estimate [lo, hi]
    and the Holm-adjusted verdict where it differs."""
    from nsr_study.findings import CLAIMS, statement

    claims = [c for c in CLAIMS if c in set(table["claim"])]
    columns = [(b, m) for b in _benchmarks(table) for m in _models_by_size(table)]
    fig, ax = plt.subplots(figsize=(2.3 * len(columns) + 3.2, 0.62 * len(claims) + 1.4))
    for i, cid in enumerate(claims):
        for j, (bench, model) in enumerate(columns):
            r = table[(table["claim"] == cid) & (table["model"] == model) & (table["benchmark"] == bench)]
            if r.empty:
                continue
            r = r.iloc[0]
            ax.add_patch(plt.Rectangle((j, i), 1, 1, color=VERDICT_COLORS[r["verdict"]], ec="white", lw=2))
            holm = f"\nHolm: {r['verdict_holm']}" if r["verdict_holm"] != r["verdict"] else ""
            ax.text(j + 0.5, i + 0.5, f"{r['estimate']:+.3f}\n[{r['lo']:+.3f}, {r['hi']:+.3f}]{holm}", ha="center",
                    va="center", fontsize=7.5)
    ax.set_xlim(0, len(columns))
    ax.set_ylim(len(claims), 0)
    several = len({b for b, _ in columns}) > 1
    ax.set_xticks(np.arange(len(columns)) + 0.5, [f"{m}\n{b}" if several else m for b, m in columns])
    ax.set_yticks(np.arange(len(claims)) + 0.5,
                  [f"{c}\n{statement(CLAIMS[c])}" for c in claims], fontsize=7.5)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in VERDICT_COLORS.values()]
    ax.legend(handles, list(VERDICT_COLORS), loc="upper center", bbox_to_anchor=(0.5, -0.09 if several else -0.04),
              ncol=3, fontsize=8, frameon=False)  # below the tick labels, two lines with several test sets
    ax.set_title(f"The paper's claims per model and test set: estimate [{100 * confidence:g} % interval over "
                 f"{table['covers'].iloc[0]}]", fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)


STRATEGY_COLORS = {"A": "#9ecae1", "B": "#e6550d", "other": "#d9d9d9"}


def strategy_share(table: pd.DataFrame, objectives: list[str], stem) -> list[Path]:
    """The positive control's mechanism (``nsr_study.aggregate.strategy_table``): per test set
    (rows) and model (columns), the share of samples using each strategy, stacked, for the base
    model and each objective (mean over seeds; the rare strategy B's bar carries ± 1 sd over
    seeds when there are several)."""
    models, benches = sorted(set(table["model"])), _benchmarks(table)
    groups = ["base"] + objectives
    fig, axes = plt.subplots(len(benches), len(models), figsize=(1.1 * len(groups) + 2.5, 3.4 * len(benches)) if
                             len(models) == 1 else (4.5 * len(models), 3.4 * len(benches)), squeeze=False, sharey=True)
    for row, bench in zip(axes, benches):
        for ax, model in zip(row, models):
            d = table[(table["benchmark"] == bench) & (table["model"] == model)]
            bottom = np.zeros(len(groups))
            for strategy, color in STRATEGY_COLORS.items():
                stats = [_mean_err(d[(d["objective"] == g) & (d["strategy"] == strategy)], "share") for g in groups]
                means = np.nan_to_num([m for m, _ in stats])
                errs = [e for _, e in stats] if strategy == "B" and any(e for _, e in stats) else None
                ax.bar(range(len(groups)), means, 0.7, bottom=bottom, yerr=errs, capsize=3, color=color,
                       label=f"strategy {strategy}" if strategy != "other" else "neither")
                bottom += means
            ax.set_xticks(range(len(groups)), [_label(g) for g in groups], rotation=30, ha="right", fontsize=8)
            ax.set_ylim(0, 1)
            ax.set_title(f"{model} on {bench}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        row[0].set_ylabel("share of samples")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Which strategy the samples use (B: the rare one, the only one that solves `rare`)", fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)
