"""Rule aggregate: tidy CSVs of all training steps and final metrics (nsr_study.aggregate)."""

from nsr_study.aggregate import final_tables, load_summaries, train_table
from nsr_study.data import read_jsonl
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    summaries = load_summaries(smk.input.evals)
    sizes = {s["model"]: s["parameters"] for s in summaries if s["objective"] == "base"}
    train = train_table(list(zip(smk.params.train_labels, smk.input.train)), sizes)
    train.to_csv(smk.output.train_metrics, index=False)
    problems = [read_jsonl(p) for p in smk.input.problems]
    for name, table in final_tables(summaries, problems).items():
        table.to_csv(smk.output["final_metrics" if name == "final" else name], index=False)
    log.info("aggregated %d training-step rows of %d cells and %d evaluations",
             len(train), len(smk.input.train), len(summaries))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
