"""Rule paper_comparison: our pass@k of the paper's model beside its Table 1 (nsr_study.paper)."""

import pandas as pd

from nsr_study import paper
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    ref = paper.load_reference()
    table = paper.comparison(pd.read_csv(smk.input.passk), smk.wildcards.model, ref, smk.params.confidence)
    table.to_csv(smk.output.table, index=False)
    paper.comparison_figure(table, ref, smk.params.confidence, smk.output.figure_png[: -len(".png")])
    ours = table.dropna(subset=["ours"])
    log.info("%d of the paper's %d numbers have ours beside them; the paper's is inside our interval for %d; "
             "mean |difference| %.3f", len(ours), len(table), int(ours["paper_inside"].sum()),
             ours["difference"].abs().mean())
    for d in paper.DIFFERENCES:
        log.info("differs: %s", d)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
