"""Prompt lengths per model, checked before any training or evaluation job starts.

Prompt lengths depend on each model's tokenizer and chat template, so they are only known
once a model is chosen. The ``prompt_lengths`` rule measures them for every model of the
grid, writes one line per model (``results/data/prompt_lengths.csv``: how many train and
validation prompts training will drop as longer than ``train.max_prompt_tokens``, the longest
test prompt that sizes the evaluation's context), and fails, naming the model and what does
not fit, where a job would fail later: a split with no prompt left, or a test problem that
the model's context cannot hold with its test set's ``max_new_tokens``. The train and evaluate
rules depend on it, so such a failure comes before any model is loaded.
"""

from __future__ import annotations

from nsr_study.evaluate import longest_test_prompt
from nsr_study.prompts import fitting, problem_prompt_ids


def model_row(name: str, tokenizer, context: int, splits: dict[str, list[dict]], prompt: dict, limit: int,
              eval_new_tokens: dict[str, int]) -> dict:
    """One model's line; raises ValueError (naming the split or test problem) where a job would.
    ``eval_new_tokens``: each test set's max_new_tokens, by name."""
    ids = {split: problem_prompt_ids(tokenizer, records, prompt) for split, records in splits.items()}
    row = {"model": name, "max_prompt_tokens": limit, "context": context}
    for split in ("train", "val"):
        kept = fitting(ids[split], limit, split)
        row |= {f"{split}_prompts": len(ids[split]), f"{split}_dropped_overlong": len(ids[split]) - len(kept),
                f"{split}_longest": max(map(len, ids[split]))}
    row |= {"test_prompts": len(ids["test"]),
            "test_longest": longest_test_prompt(splits["test"], ids["test"], eval_new_tokens, context)}
    return row
