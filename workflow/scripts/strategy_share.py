"""Rule strategy_share: the positive control's share of samples by strategy, per evaluation
and test set (nsr_study.aggregate.strategy_table), and its figure (nsr_study.figures.strategy_share)."""

from nsr_study import figures
from nsr_study.aggregate import strategy_table
from nsr_study.data import read_jsonl
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    table = strategy_table(smk.params.labels, [read_jsonl(p) for p in smk.input.problems])
    if table.empty:
        raise ValueError("no evaluation row carries a strategy tag: rule strategy_share needs data.synthetic.task strategies")
    table.to_csv(smk.output.table, index=False)
    figures.strategy_share(table, smk.params.objectives, smk.output.figure_png[: -len(".png")])
    log.info("share of the rare strategy B:\n%s", table[table["strategy"] == "B"].to_string(index=False))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
