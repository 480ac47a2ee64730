"""Rule prepare_data: load MATH's train split, extract golds, stratified train and the
validation subset carved from it (nsr_study.data). The test sets are rule prepare_test's:
changing them never rewrites the training data."""

from nsr_study import data
from nsr_study.logs import setup_logging


def main(smk):
    log = setup_logging(smk.log[0])
    p = smk.params
    splits = data.sample_math(p.hub, smk.input, "train", p.train_fraction, p.seed, p.val_size, log)[0]
    for split, records in splits.items():
        data.write_jsonl(records, smk.output[split])
    log.info("wrote train %d, val %d rows", len(splits["train"]), len(splits["val"]))


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
