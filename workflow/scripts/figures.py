"""Rule figures: every figure from the aggregated CSVs (nsr_study.figures)."""

import pandas as pd

from nsr_study import figures
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    objectives, out = smk.params.objectives, smk.output
    train = pd.read_csv(smk.input.train_metrics)
    final = pd.read_csv(smk.input.final_metrics)
    passk = pd.read_csv(smk.input.passk)
    stem = lambda name: out[f"{name}_png"][: -len(".png")]  # noqa: E731
    figures.training_curves(train, objectives, smk.params.window, stem("training_curves_smoothed"))
    figures.final_performance(final, objectives, stem("final_performance_comparison"))
    figures.passk_curves(passk, objectives, stem("passk_curves"))
    figures.model_size(final, objectives, stem("model_size"))
    log.info("drew %d figure files", len(out))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
