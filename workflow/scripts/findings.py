"""Rule findings: the paper's claims per model and test set with intervals over seeds and test
problems and Holm-adjusted verdicts, their trend over model size and prior, the verdict figure and
the report's front page in words (nsr_study.findings, called once per test set: each set is its own
family of verdicts)."""

from pathlib import Path

import pandas as pd

from nsr_study import figures
from nsr_study.data import read_jsonl
from nsr_study.findings import findings, model_inputs, summary_rst
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    p, out = smk.params, smk.output
    final = pd.read_csv(smk.input.final)
    problems = [read_jsonl(f) for f in smk.input.problems]
    tables, trends, words = [], [], []
    for bench in p.benchmarks:
        rows = [[r for r in evaluation if r["benchmark"] == bench] for evaluation in problems]
        models = model_inputs(p.labels, rows, final[final["benchmark"] == bench])
        table, trend, untested = findings(models, p.confidence, p.margin)
        tables.append(table.assign(benchmark=bench))
        trends.append(trend.assign(benchmark=bench))
        title = "Findings" if len(p.benchmarks) == 1 else f"Findings on {bench}"
        words.append(summary_rst(table, trend, untested, p.confidence, p.margin, title))
        log.info("%s: %d verdicts (%s; after Holm %s), %d trends; %s", bench, len(table),
                 table["verdict"].value_counts().to_dict(), table["verdict_holm"].value_counts().to_dict(), len(trend),
                 "; ".join(untested) or "every claim tested")
    table = pd.concat(tables, ignore_index=True)
    table = table[["benchmark"] + [c for c in table if c != "benchmark"]]
    trend = pd.concat(trends, ignore_index=True)
    trend = trend[["benchmark"] + [c for c in trend if c != "benchmark"]]
    table.to_csv(out.findings, index=False)
    trend.to_csv(out.trend, index=False)
    figures.findings_verdicts(table, p.confidence, out.figure_png[: -len(".png")])
    Path(out.front_page).write_text(Path(smk.input.front_page).read_text().rstrip() + "\n\n\n" + "\n\n".join(words))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
