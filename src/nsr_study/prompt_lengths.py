"""Prompt lengths per model, checked before any training or evaluation job starts.

Prompt lengths depend on each model's tokenizer and chat template, so they are only known
once a model is chosen. Two rules measure them per model, so that adding a model or changing an
evaluation setting reruns no other job: ``prompt_lengths`` writes
``results/data/prompt_lengths/<model>/train.csv`` (how many train and validation prompts
training will drop as longer than ``train.max_prompt_tokens``), which the model's train jobs
depend on, and ``test_prompt_lengths`` writes ``…/<model>/test.csv`` (the longest test prompt,
which sizes the evaluation's context), which its evaluations depend on. Each fails, naming the
model and what does not fit, where a job would fail later: a split with no prompt left, or a
test problem that the model's context cannot hold with its test set's ``max_new_tokens``; so
such a failure comes before any model is loaded.
"""

from __future__ import annotations

from nsr_study.evaluate import longest_test_prompt
from nsr_study.prompts import fitting, problem_prompt_ids


def model_row(name: str, tokenizer, context: int, splits: dict[str, list[dict]], prompt: dict,
              limit: int | None = None, eval_new_tokens: dict[str, int] | None = None) -> dict:
    """One model's line for the ``splits`` given (train/val with ``limit``, test with
    ``eval_new_tokens``: each test set's max_new_tokens, by name); raises ValueError (naming the
    split or test problem) where a job would."""
    ids = {split: problem_prompt_ids(tokenizer, records, prompt) for split, records in splits.items()}
    row = {"model": name, "context": context}
    for split in ("train", "val"):
        if split in ids:
            kept = fitting(ids[split], limit, split)
            row |= {"max_prompt_tokens": limit, f"{split}_prompts": len(ids[split]),
                    f"{split}_dropped_overlong": len(ids[split]) - len(kept), f"{split}_longest": max(map(len, ids[split]))}
    if "test" in ids:
        row |= {"test_prompts": len(ids["test"]),
                "test_longest": longest_test_prompt(splits["test"], ids["test"], eval_new_tokens, context)}
    return row
