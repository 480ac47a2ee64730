"""Prompt lengths per model: training's drop counts and the evaluation's context, checked
before any model work (nsr_study.prompt_lengths, nsr_study.evaluate.longest_prompt)."""

import pytest

from conftest import demo_config, tiny_cell_dir
from nsr_study.data import read_jsonl
from nsr_study.evaluate import longest_prompt, longest_test_prompt, model_context
from nsr_study.loading import load_tokenizer
from nsr_study.prompt_lengths import model_row
from nsr_study.prompts import problem_prompt_ids


def test_longest_test_prompt_sizes_the_context_or_is_refused_by_name():
    """Prompts of 5 and 9 tokens with 10 new tokens need 19 positions: 19 fit, 18 do not, and
    the refusal names problem b and its length."""
    records = [{"id": "test-a"}, {"id": "test-b"}]
    prompts = [[1] * 5, [1] * 9]
    assert longest_prompt(records, prompts, max_new_tokens=10, context=19) == 9
    with pytest.raises(ValueError, match=r"test problem test-b: its prompt has 9 tokens, which with "
                                         r"evaluate.max_new_tokens = 10 exceeds the model's context of 18 tokens"):
        longest_prompt(records, prompts, max_new_tokens=10, context=18)


def test_each_test_set_is_checked_with_its_own_new_tokens():
    """Set a: 5 prompt + 10 new = 15 positions; set b: 9 + 5 = 14. Both fit 15, although b's
    prompt with a's 10 new tokens would not; with 14 positions a's problem is refused."""
    records = [{"id": "a-1", "benchmark": "a"}, {"id": "b-1", "benchmark": "b"}]
    prompts = [[1] * 5, [1] * 9]
    assert longest_test_prompt(records, prompts, {"a": 10, "b": 5}, context=15) == 9
    with pytest.raises(ValueError, match=r"test problem a-1: its prompt has 5 tokens"):
        longest_test_prompt(records, prompts, {"a": 10, "b": 5}, context=14)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tiny_cell_dir(tmp_path_factory.mktemp("lengths"), hidden_size=16, intermediate_size=32, num_layers=1,
                         num_heads=2, num_kv_heads=1)
    splits = {s: read_jsonl(root / f"{s}.jsonl") for s in ("train", "val")}
    splits["test"] = splits["val"]
    return root / "model", splits


def test_one_line_per_model_counts_what_training_drops(tiny):
    model, splits = tiny
    tokenizer, prompt = load_tokenizer(str(model)), demo_config()["prompt"]
    lengths = {s: [len(p) for p in problem_prompt_ids(tokenizer, r, prompt)] for s, r in splits.items()}
    limit = sorted(lengths["train"])[len(lengths["train"]) // 2]
    assert 0 < sum(n > limit for n in lengths["train"]) < len(lengths["train"])  # the test can fail
    context = model_context(str(model))
    row = model_row("tiny", tokenizer, context, splits, prompt, limit, eval_new_tokens={"math": 16})
    assert model_row("tiny", tokenizer, context, {"test": splits["test"]}, prompt, eval_new_tokens={"math": 16}) == {
        "model": "tiny", "context": context, "test_prompts": len(lengths["test"]), "test_longest": max(lengths["test"])}
    assert row == {"model": "tiny", "max_prompt_tokens": limit, "context": context,
                   "train_prompts": len(lengths["train"]), "train_dropped_overlong": sum(n > limit for n in lengths["train"]),
                   "train_longest": max(lengths["train"]), "val_prompts": len(lengths["val"]),
                   "val_dropped_overlong": sum(n > limit for n in lengths["val"]), "val_longest": max(lengths["val"]),
                   "test_prompts": len(lengths["test"]), "test_longest": max(lengths["test"])}
    with pytest.raises(ValueError, match="test problem val-"):
        model_row("tiny", tokenizer, max(lengths["test"]) + 15, splits, prompt, limit, eval_new_tokens={"math": 16})
    with pytest.raises(ValueError, match="every train prompt is longer than train.max_prompt_tokens = 1 "):
        model_row("tiny", tokenizer, context, splits, prompt, 1, eval_new_tokens={"math": 16})
