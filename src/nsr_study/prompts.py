"""The one prompt format: the configured system message and user turn (``prompt`` in the
config; default = the paper's released code, docs/training.md), rendered through the model's own chat
template at train/eval time, never baked into the data.

The system message is always passed explicitly: Qwen2.5's chat template injects its own default
system prompt ("You are Qwen, created by Alibaba Cloud…") when a conversation has none.
"""

from __future__ import annotations


def messages(problem: str, prompt: dict) -> list[dict]:
    """The chat of one problem: ``prompt['system']`` (None: none) and the user turn with the
    problem in place of ``{problem}`` (``str.format`` would trip over ``\\boxed{}``)."""
    system = [{"role": "system", "content": prompt["system"]}] if prompt["system"] is not None else []
    return system + [{"role": "user", "content": prompt["user"].replace("{problem}", problem)}]


def chat_prompt(tokenizer, problem: str, prompt: dict) -> str:
    """The text the model continues: its chat template around the system and user turns."""
    return tokenizer.apply_chat_template(messages(problem, prompt), tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of rendered prompts; the template already holds any special tokens."""
    return tokenizer(prompts, add_special_tokens=False)["input_ids"]


def problem_prompt_ids(tokenizer, records: list[dict], prompt: dict) -> list[list[int]]:
    """Token ids of each record's chat prompt (records carry a ``problem``)."""
    return prompt_ids(tokenizer, [chat_prompt(tokenizer, r["problem"], prompt) for r in records])


def fitting(ids: list[list[int]], limit: int, split: str) -> list[int]:
    """Positions of the prompts with at most ``limit`` (train.max_prompt_tokens) tokens; the
    rest are dropped, as the paper's code drops them. A ``split`` with none left is refused."""
    keep = [i for i, p in enumerate(ids) if len(p) <= limit]
    if ids and not keep:
        raise ValueError(f"every {split} prompt is longer than train.max_prompt_tokens = {limit} "
                         f"(the shortest has {min(map(len, ids))} tokens): raise it")
    return keep


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, or its EOS where it has none (padding is masked out anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
