"""Rule synthetic_data: MATH-format problems for the offline demo (nsr_study.synthetic)."""

from nsr_study.data import write_jsonl
from nsr_study.logs import setup_logging
from nsr_study.synthetic import generate, generate_longer


def main(smk):
    log = setup_logging(smk.log[0])
    cfg = smk.params.synthetic
    train, test = generate(cfg["n_train"], cfg["n_test"], cfg["seed"])
    write_jsonl(train, smk.output.train, fields=None)
    write_jsonl(test, smk.output.test, fields=None)
    longer = generate_longer(cfg["n_longer"], cfg["seed"])
    write_jsonl(longer, smk.output.longer, fields=None)
    log.info("wrote %d problems with longer chains (levels 6-7) for a test set of their own", len(longer))
    log.info("wrote %d train and %d test synthetic problems (seed %d)", len(train), len(test), cfg["seed"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
