"""Rule build_tiny_model: tokenizer, tiny Qwen2 model, SFT prior and its check (nsr_study.tiny).

Imports inside ``main``: the prior check's grading workers re-import this script, and need none
of torch and transformers (nsr_study.grading.Grader)."""


def main(smk):
    import torch

    from nsr_study.data import read_jsonl
    from nsr_study.logs import setup_logging
    from nsr_study.tiny import build

    setup_logging(smk.log[0])
    torch.set_num_threads(smk.threads)
    build(smk.params.spec, read_jsonl(smk.input.train), read_jsonl(smk.input.val), smk.output[0],
          prompt=smk.params.prompt, seed=smk.params.seed, grader_workers=smk.params.grading_workers)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
