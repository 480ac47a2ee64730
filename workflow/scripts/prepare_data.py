"""Rule prepare_data: load MATH's train split, extract golds, stratified train and the
validation subset carved from it (nsr_study.data). The test sets are rule prepare_test's:
changing them never rewrites the training data."""

from nsr_study import data
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    p = smk.params
    source = data.math_source(p.hub, smk.input, "train")
    rows, where = data.load_rows(source, "train"), data.describe(source)
    unrated = [i for i, r in enumerate(rows, 1) if r["level"] == data.UNRATED_LEVEL]
    if unrated:
        log.warning("%s: rows %s are %r (unrated in MATH): kept as a stratum of their own", where, unrated,
                    data.UNRATED_LEVEL)
    splits, table, dropped = data.prepare_split("train", rows, p.train_fraction, p.seed, p.val_size, where)
    for rec in dropped:
        log.warning("%s: row %d (%s) dropped: %s", where, rec["row"], rec["id"], rec["reason"])
    for split, records in splits.items():
        data.write_jsonl(records, smk.output[split])
    log.info(data.sampling_summary("train", table))
    log.info("wrote train %d, val %d rows", len(splits["train"]), len(splits["val"]))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
