"""Rule findings: the paper's claims per model with intervals over seeds and test problems and
Holm-adjusted verdicts, their trend over model size and prior, the verdict figure and the
report's front page in words (nsr_study.findings)."""

from pathlib import Path

import pandas as pd

from nsr_study import figures
from nsr_study.data import read_jsonl
from nsr_study.findings import findings, model_inputs, summary_rst
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    p, out = smk.params, smk.output
    models = model_inputs(p.labels, [read_jsonl(f) for f in smk.input.problems], pd.read_csv(smk.input.final))
    table, trend, untested = findings(models, p.confidence, p.margin)
    table.to_csv(out.findings, index=False)
    trend.to_csv(out.trend, index=False)
    figures.findings_verdicts(table, p.confidence, out.figure_png[: -len(".png")])
    words = summary_rst(table, trend, untested, p.confidence, p.margin)
    Path(out.front_page).write_text(Path(smk.input.front_page).read_text().rstrip() + "\n\n\n" + words)
    log.info("%d verdicts (%s; after Holm %s), %d trends; %s", len(table), table["verdict"].value_counts().to_dict(),
             table["verdict_holm"].value_counts().to_dict(), len(trend),
             "; ".join(untested) or "every claim tested")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
