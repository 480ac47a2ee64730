"""The one prompt format: the problem plus the instruction the paper's code uses, wrapped in
the model's own chat template (applied at train/eval time, never baked into the data)."""

from __future__ import annotations

INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


def chat_prompt(tokenizer, problem: str) -> str:
    """The text the model continues: its chat template around one user turn."""
    messages = [{"role": "user", "content": f"{problem} {INSTRUCTION}"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of rendered prompts; the template already holds any special tokens."""
    return tokenizer(prompts, add_special_tokens=False)["input_ids"]


def problem_prompt_ids(tokenizer, records: list[dict]) -> list[list[int]]:
    """Token ids of each record's chat prompt (records carry a ``problem``)."""
    return prompt_ids(tokenizer, [chat_prompt(tokenizer, r["problem"]) for r in records])


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, or its EOS where it has none (padding is masked out anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
