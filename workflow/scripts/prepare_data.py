"""Rule prepare_data: load MATH, extract golds, stratified train/val/test, and the other test
sets of `benchmarks` appended to the test table (column `benchmark`) (nsr_study.data)."""

import pandas as pd

from nsr_study import data
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    p = smk.params
    if p.hub:
        sources = {s: {"hub": p.hub["id"], "config": p.hub["config"], "revision": p.hub["revision"],
                       "split": p.hub[f"{s}_split"]} for s in ("train", "test")}
    else:
        sources = {s: {"path": smk.input[s]} for s in ("train", "test")}
    rows = {s: data.load_rows(src, s) for s, src in sources.items()}
    where = {s: data.describe(src) for s, src in sources.items()}
    splits, table, dropped = data.prepare(rows["train"], rows["test"], p.train_fraction, p.test_fraction,
                                          p.val_size, p.seed, where)
    for s in ("train", "test"):
        unrated = [i for i, r in enumerate(rows[s], 1) if r["level"] == data.UNRATED_LEVEL]
        if unrated:
            log.warning("%s: rows %s are %r (unrated in MATH): kept as a stratum of their own", where[s],
                        unrated, data.UNRATED_LEVEL)
    for s, recs in dropped.items():
        for rec in recs:
            log.warning("%s: row %d (%s) dropped: %s", where[s], rec["row"], rec["id"], rec["reason"])
    counts = [{"benchmark": data.MATH, "source": f"{where['test']} (stratified sample of data)", "gold": "solution",
               "source_rows": len(rows["test"]), "dropped": len(dropped["test"]), "problems": len(splits["test"])}]
    for entry in p.benchmarks:
        source = data.benchmark_source(entry)
        kept, lost = data.benchmark_records(entry["name"], data.describe(source), data.read_rows(source),
                                            entry["gold"], p.timeout_s)
        for rec in lost:
            log.warning("benchmark %s: row %d (%s) dropped: %s", entry["name"], rec["row"], rec["id"], rec["reason"])
        counts.append({"benchmark": entry["name"], "source": data.describe(source), "gold": entry["gold"],
                       "source_rows": len(kept) + len(lost), "dropped": len(lost), "problems": len(kept)})
        splits["test"] = splits["test"] + kept
    for split, records in splits.items():
        data.write_jsonl(records, smk.output[split])
    counts = pd.DataFrame(counts)
    counts.to_csv(smk.output.benchmarks, index=False)
    log.info("test sets:\n%s", counts.to_string(index=False))
    table.to_csv(smk.output.strata, index=False)
    data.plot_strata(table, smk.output.figure)
    for split in ("train", "test"):
        t = table[table["split"] == split]
        log.info("%s: %d source rows, dropped %d without a gold answer (reasons above), sampled %d over %d strata "
                 "(max |rows - exact share| = %.2f)", split, t["source_rows"].sum() + t["dropped_no_gold"].sum(),
                 t["dropped_no_gold"].sum(), t["sampled_rows"].sum(), len(t),
                 (t["sampled_rows"] - t["expected_rows"]).abs().max())
    log.info("wrote train %d, val %d, test %d rows", *(len(splits[s]) for s in ("train", "val", "test")))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
