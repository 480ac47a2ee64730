"""Rule synthetic_data: MATH-format problems for the offline demo (nsr_study.synthetic): the
demo's sums, or the positive control's two-strategy sums (data.synthetic.task; the config
checks say which extra set each task has, nsr_study.config.synthetic_task_errors)."""

from nsr_study.data import write_jsonl
from nsr_study.logs import setup_logging
from nsr_study.synthetic import generate, generate_longer, generate_strategies


def main(smk):
    log = setup_logging(smk.log[0])
    cfg = smk.params.synthetic
    if cfg["task"] == "strategies":
        train, test, rare = generate_strategies(cfg["n_train"], cfg["n_test"], cfg["n_rare"], cfg["seed"])
        longer = []
    else:
        train, test = generate(cfg["n_train"], cfg["n_test"], cfg["seed"])
        longer, rare = generate_longer(cfg["n_longer"], cfg["seed"]), []
    write_jsonl(train, smk.output.train, fields=None)
    write_jsonl(test, smk.output.test, fields=None)
    write_jsonl(longer, smk.output.longer, fields=None)
    write_jsonl(rare, smk.output.rare, fields=None)
    log.info("wrote %d problems with longer chains (levels 6-7) and %d B-only problems for test sets of their own",
             len(longer), len(rare))
    log.info("wrote %d train and %d test synthetic %s problems (seed %d)", len(train), len(test), cfg["task"],
             cfg["seed"])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
