"""Rule prepare_test: MATH's stratified test sample and the other test sets of `benchmarks`
appended to it (column `benchmark`), their counts, and the strata table and figure of both
MATH splits (nsr_study.data). Training reads none of its outputs."""

import pandas as pd

from nsr_study import data
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    p = smk.params
    splits, table, dropped, where = data.sample_math(p.hub, smk.input, "test", p.test_fraction, p.seed, log=log)
    counts = [{"benchmark": data.MATH, "source": f"{where} (stratified sample of data)", "gold": "solution",
               "source_rows": int(table["source_rows"].sum()) + len(dropped), "dropped": len(dropped),
               "problems": len(splits["test"])}]
    for entry in p.benchmarks:
        source = data.benchmark_source(entry)
        kept, lost = data.benchmark_records(entry["name"], data.describe(source), data.read_rows(source),
                                            entry["gold"], p.timeout_s)
        for rec in lost:
            log.warning("benchmark %s: row %d (%s) dropped: %s", entry["name"], rec["row"], rec["id"], rec["reason"])
        counts.append({"benchmark": entry["name"], "source": data.describe(source), "gold": entry["gold"],
                       "source_rows": len(kept) + len(lost), "dropped": len(lost), "problems": len(kept)})
        splits["test"] = splits["test"] + kept
    data.write_jsonl(splits["test"], smk.output.test)
    counts = pd.DataFrame(counts)
    counts.to_csv(smk.output.benchmarks, index=False)
    log.info("test sets:\n%s", counts.to_string(index=False))
    # prepare_data's draw again, for its strata
    train_table = data.sample_math(p.hub, smk.input, "train", p.train_fraction, p.seed, p.val_size)[1]
    table = pd.concat([train_table, table], ignore_index=True)
    table.to_csv(smk.output.strata, index=False)
    data.plot_strata(table, smk.output.figure)
    log.info("wrote test %d rows", len(splits["test"]))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
