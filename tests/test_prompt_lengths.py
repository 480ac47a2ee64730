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


def test_the_engine_holds_what_one_test_set_needs_and_a_set_that_does_not_fit_is_named():
    """Set a: 5 prompt + 10 new = 15 positions; set b: 9 + 5 = 14: the engine holds 15, not
    b's prompt with a's budget (19, b14a05b's size, beyond a 15-position model). With 14
    positions set a is refused by name."""
    from nsr_study.evaluate import engine_length

    records = [{"id": "a-1", "benchmark": "a"}, {"id": "b-1", "benchmark": "b"}]
    prompts = [[1] * 5, [1] * 9]
    assert engine_length(records, prompts, {"a": 10, "b": 5}, context=15) == 15
    with pytest.raises(ValueError, match=r"test problem a-1: .* context of 14 tokens in test set a; lower that set's"):
        engine_length(records, prompts, {"a": 10, "b": 5}, context=14)


def test_an_evaluation_sizes_its_engine_by_its_longest_test_set(tiny, monkeypatch):
    """The tiny model's test problems in two sets: the longest prompt (length L) in set a with 4
    new tokens, the rest (longest ℓ < L) in set b with 40: the engine gets max(L + 4, ℓ + 40)
    positions (b14a05b gave it L + 40)."""
    from nsr_study import evaluate as ev

    model, splits = tiny
    cfg = demo_config()
    tokenizer = load_tokenizer(str(model))
    records = [dict(r) for r in splits["test"]]
    lengths = [len(p) for p in problem_prompt_ids(tokenizer, records, cfg["prompt"])]
    top = max(range(len(records)), key=lengths.__getitem__)
    for i, r in enumerate(records):
        r["benchmark"] = "a" if i == top else "b"
    rest = max(n for i, n in enumerate(lengths) if i != top)
    assert rest < lengths[top]  # the test can fail
    seen = {}

    def backend(kind, model, tokenizer, model_id, cfg, seed, max_model_len=None):
        seen["length"] = max_model_len or cfg["max_prompt_tokens"] + cfg["max_new_tokens"]
        raise InterruptedError

    monkeypatch.setattr(ev, "make_backend", backend)
    evaluate_cfg = cfg["evaluate"] | {k: cfg["train"][k] for k in ("device", "dtype", "micro_batch_size",
                                                                    "generation_batch_size", "logprob_chunk")}
    evaluate_cfg["benchmarks"] = {"a": {"n": 1, "max_new_tokens": 4}, "b": {"n": 1, "max_new_tokens": 40}}
    with pytest.raises(InterruptedError):
        ev.evaluate(str(model), records, evaluate_cfg, cfg["prompt"], cfg["grading"], seed=0)
    assert seen["length"] == max(lengths[top] + 4, rest + 40) < lengths[top] + 40
