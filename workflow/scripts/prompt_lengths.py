"""Rules prompt_lengths and test_prompt_lengths: one model's prompt lengths on the splits that
are the rule's inputs, failing before any model work where a training or evaluation job would
fail (nsr_study.prompt_lengths)."""

import logging

import pandas as pd

from nsr_study.data import read_jsonl
from nsr_study.evaluate import model_context
from nsr_study.loading import load_tokenizer
from nsr_study.logs import setup_logging
from nsr_study.prompt_lengths import model_row


log = logging.getLogger("nsr_study.prompt_lengths")


def main(smk):
    setup_logging(smk.log[0])
    splits = {split: read_jsonl(smk.input[split]) for split in ("train", "val", "test") if split in smk.input.keys()}
    name, path = smk.wildcards.model, smk.params.model
    try:
        row = model_row(name, load_tokenizer(path), model_context(path), splits, smk.params.prompt,
                        smk.params.get("max_prompt_tokens"), smk.params.get("eval_max_new_tokens"))
    except ValueError as e:
        message = f"prompts that no job could use: model {name}: {e}"
        log.error(message)  # into the rule's log too, beside the job's stderr
        raise SystemExit(message)
    table = pd.DataFrame([row])
    log.info("\n%s", table.to_string(index=False))
    table.to_csv(smk.output[0], index=False)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
