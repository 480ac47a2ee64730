"""Rule prepare_data: load MATH's train split, extract golds, stratified train and the
validation subset carved from it, and the train half of the strata table (nsr_study.data).
The test sets are rule prepare_test's: changing them never rewrites the training data."""

from nsr_study import data
from nsr_study.logs import setup_logging


def source(p, inputs, split: str) -> dict:
    """Where MATH's ``split`` comes from: the hub (``data.hub``) or a file."""
    if p.hub:
        return {"hub": p.hub["id"], "config": p.hub["config"], "revision": p.hub["revision"],
                "split": p.hub[f"{split}_split"]}
    return {"path": inputs[split]}


def load(p, inputs, split: str, log) -> tuple[list[dict], str]:
    """MATH's ``split`` rows and where they come from, warning about unrated rows."""
    src = source(p, inputs, split)
    rows, where = data.load_rows(src, split), data.describe(src)
    unrated = [i for i, r in enumerate(rows, 1) if r["level"] == data.UNRATED_LEVEL]
    if unrated:
        log.warning("%s: rows %s are %r (unrated in MATH): kept as a stratum of their own", where, unrated,
                    data.UNRATED_LEVEL)
    return rows, where


def report(split: str, where: str, dropped: list[dict], table, log) -> None:
    """Log each dropped row and the split's sampling summary."""
    for rec in dropped:
        log.warning("%s: row %d (%s) dropped: %s", where, rec["row"], rec["id"], rec["reason"])
    log.info("%s: %d source rows, dropped %d without a gold answer (reasons above), sampled %d over %d strata "
             "(max |rows - exact share| = %.2f)", split, table["source_rows"].sum() + table["dropped_no_gold"].sum(),
             table["dropped_no_gold"].sum(), table["sampled_rows"].sum(), len(table),
             (table["sampled_rows"] - table["expected_rows"]).abs().max())


def main(smk):
    log = setup_logging(smk.log[0])
    p = smk.params
    rows, where = load(p, smk.input, "train", log)
    splits, table, dropped = data.prepare_split("train", rows, p.train_fraction, p.seed, p.val_size, where)
    report("train", where, dropped, table, log)
    for split, records in splits.items():
        data.write_jsonl(records, smk.output[split])
    table.to_csv(smk.output.strata, index=False)
    log.info("wrote train %d, val %d rows", len(splits["train"]), len(splits["val"]))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
