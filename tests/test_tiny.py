"""Tiny demo models: the tokenizer survives AutoTokenizer, the Auto classes load
what was saved, SFT learns, and build() writes a loadable model with its prior."""

import json

import pytest
import torch
from tokenizers import pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2Tokenizer

from conftest import study_config, tiny_spec
from nsr_study.prompts import chat_prompt, prompt_ids
from nsr_study.synthetic import CLAUSE, generate, generate_strategies, strategy_of
from nsr_study.answers import last_boxed
from nsr_study.tiny import (IM_END, IM_START, PAD, build, build_model, build_tokenizer, collate, corpus, draw,
                            off_by_one, sft, sft_examples, sft_records, sft_targets)

PROMPT = study_config()["prompt"]
SPEC = tiny_spec(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1, batch_size=8,
                sft_steps=40, lr=1e-2, max_new_tokens=16, t1_samples=2)
ODD = ["héllo  wörld\n\n\tx", "’≡ß 12345 ", "  leading and trailing  ", "<|im_start|>user\nhi<|im_end|>\n"]


@pytest.fixture(scope="module")
def records():
    train, val = generate(200, 20, seed=3)
    return train, val


@pytest.fixture(scope="module")
def tokenizer(records):
    return build_tokenizer(corpus(records[0], PROMPT, SPEC), SPEC.vocab_size)


def save_beside_qwen2_config(tok, path):
    """What a model directory holds: AutoTokenizer then picks the class from the Qwen2 config."""
    tok.save_pretrained(path)
    Qwen2Config(vocab_size=len(tok)).save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def texts_to_check(tok, records):
    rs = records[0][:40] + records[1]
    return ([r["problem"] for r in rs] + [r["solution"] for r in rs] + ODD
            + [chat_prompt(tok, r["problem"], PROMPT) for r in rs])


def test_tokenizer_survives_autotokenizer_as_qwen2tokenizer(tokenizer, records, tmp_path):
    loaded = save_beside_qwen2_config(tokenizer, tmp_path)
    assert isinstance(loaded, Qwen2Tokenizer)
    texts = texts_to_check(tokenizer, records)
    before = tokenizer(texts, add_special_tokens=False)["input_ids"]
    after = loaded(texts, add_special_tokens=False)["input_ids"]
    assert before == after
    assert [loaded.decode(ids) for ids in after] == texts
    assert len(loaded) == len(tokenizer) <= SPEC.vocab_size
    assert (loaded.pad_token, loaded.eos_token) == (PAD, IM_END)
    assert [loaded.convert_tokens_to_ids(t) for t in (PAD, IM_START, IM_END)] == [0, 1, 2]


def test_a_foreign_pre_tokenizer_would_not_survive(records, tmp_path):
    """The trap the module avoids: GPT-2's pre-tokenizer (digit runs kept together) gives
    different ids once Qwen2Tokenizer swaps its own in — so the round-trip test has teeth."""
    tok = build_tokenizer(corpus(records[0], PROMPT, SPEC), SPEC.vocab_size)
    backend = tok.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(corpus(records[0], PROMPT, SPEC), trainers.BpeTrainer(
        vocab_size=SPEC.vocab_size, special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    loaded = save_beside_qwen2_config(tok, tmp_path)
    texts = [r["solution"] for r in records[1]]
    assert tok(texts)["input_ids"] != loaded(texts)["input_ids"]


def test_chat_template_renders_chatml_through_autotokenizer(tokenizer, tmp_path):
    loaded = save_beside_qwen2_config(tokenizer, tmp_path)
    text = chat_prompt(loaded, "Compute $1 + 2$.", PROMPT)
    # the paper's prompt: explicit system message, problem, newline, instruction
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nCompute $1 + 2$.\n"
                    "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = prompt_ids(loaded, [text])[0]
    assert ids[0] == loaded.convert_tokens_to_ids(IM_START) and ids.count(loaded.eos_token_id) == 2  # system, user
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"}]
    assert loaded.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n")


def test_auto_classes_load_the_same_model(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = build_model(SPEC, tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded, tok = AutoModelForCausalLM.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.config.model_type == "qwen2" and loaded.dtype == torch.float32
    assert loaded.generation_config.eos_token_id == tok.convert_tokens_to_ids(IM_END) == tok.eos_token_id
    assert loaded.generation_config.pad_token_id == tok.convert_tokens_to_ids(PAD) == tok.pad_token_id
    ids = torch.tensor(prompt_ids(tok, [chat_prompt(tok, "Solve $2x = 4$ for $x$.", PROMPT)]))
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, loaded.eval()(ids).logits)


def test_collate_puts_loss_on_target_and_eos_only():
    batch = collate([([5, 6, 7], [8, 2]), ([5], [9, 9, 2])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 2], [5, 9, 9, 2, 0]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 8, 2], [-100, 9, 9, 2, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_off_by_one_changes_only_the_final_answer():
    solution = "$19 + 9 = 28$. $28 + 7 = 35$. The answer is $\\boxed{35}$."
    assert off_by_one(solution) == "$19 + 9 = 28$. $28 + 7 = 35$. The answer is $\\boxed{36}$."
    assert off_by_one("$0 + 0 = 0$. The answer is $\\boxed{0}$.").endswith("$\\boxed{1}$.")


def test_sft_examples_pair_each_solution_with_its_wrong_version(tokenizer, records):
    examples = sft_examples(tokenizer, records[0], PROMPT, SPEC)
    for (_, [(p_wrong, wrong), (p_right, right)]), r in zip(examples, records[0]):
        assert right[-1] == wrong[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(right[:-1]) == r["solution"]
        assert int(last_boxed(tokenizer.decode(wrong[:-1]))) == int(r["answer"]) + 1
        assert (p_wrong, p_right) == (SPEC.wrong_share_of(r["level"]), 1 - SPEC.wrong_share_of(r["level"]))


def test_the_two_strategy_prior_writes_both_strategies_on_every_problem_and_its_twin():
    train, _, _ = generate_strategies(4, 0, 0, seed=0)
    spec = tiny_spec(rare_share=0.2, wrong_share=0.25, rare_wrong_share=0.1)
    problems = sft_records(train, spec)
    assert [r["problem"] for r in problems[4:]] == [r["problem"][:-1] + CLAUSE + "." for r in train]
    targets = sft_targets(problems[4], spec)  # a problem with the clause: A's answers ignore it
    assert [round(p, 6) for p, _ in targets] == [0.2, 0.6, 0.02, 0.18]  # 0.8×0.25, 0.8×0.75, 0.2×0.1, 0.2×0.9
    digits = [int(d) for d in problems[4]["problem"].split("$")[1].split(" + ")]
    answers = [int(last_boxed(t)) for _, t in targets]
    assert answers == [sum(digits) + 1, sum(digits), sum(digits) + digits[-1] + 1, sum(digits) + digits[-1]]
    assert [strategy_of(t) for _, t in targets] == ["A", "A", "B", "B"]
    with pytest.raises(ValueError, match="has the clause"):
        sft_records(problems[4:], spec)
    # with rare_slip, B's wrong answer leaves out the number before the last; A's is unchanged
    slipped = sft_targets(problems[4], tiny_spec(rare_share=0.2, wrong_share=0.25, rare_wrong_share=0.1,
                                                 rare_slip=True))
    texts = [t for _, t in slipped]
    assert [round(p, 6) for p, _ in slipped] == [0.2, 0.6, 0.02, 0.18]
    assert texts[:2] + texts[3:] == [targets[0][1], targets[1][1], targets[3][1]]
    assert int(last_boxed(texts[2])) == sum(digits) + digits[-1] - digits[-2]
    assert strategy_of(texts[2]) == "B"


def test_draw_takes_the_target_whose_cumulative_probability_passes_u():
    targets = [(0.2, "w"), (0.5, "r"), (0.3, "b")]
    assert [draw(targets, u) for u in (0.0, 0.19, 0.2, 0.69, 0.7, 0.999)] == ["w", "w", "r", "r", "b", "b"]


def test_wrong_share_is_one_share_or_one_per_level():
    assert tiny_spec(wrong_share=0.3).wrong_share_of("Level 4") == 0.3
    per_level = tiny_spec(wrong_share=[0.1, 0.3, 0.5, 0.7, 0.9])
    assert [per_level.wrong_share_of(f"Level {lv}") for lv in (1, 3, 5)] == [0.1, 0.5, 0.9]


def test_sft_lowers_the_loss_deterministically(tokenizer, records):
    examples = sft_examples(tokenizer, records[0], PROMPT, SPEC)

    def run():
        torch.manual_seed(0)
        return sft(build_model(SPEC, tokenizer), examples, tokenizer.pad_token_id, SPEC, seed=1)

    losses = run()
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert losses == run()


def test_build_writes_a_loadable_model_and_its_prior(records, tmp_path):
    train, val = records
    prior = build(SPEC, train, val[:8], tmp_path, PROMPT, seed=0, grader_workers=2)
    assert json.loads((tmp_path / "prior.json").read_text()) == prior
    assert 0 <= prior["greedy"]["accuracy"] <= 1 and prior["greedy"]["problems"] == 8
    assert prior["sampled_t1"]["samples_per_problem"] == 2 and sum(prior["sampled_t1"]["statuses"].values()) == 16
    assert set(prior["greedy"]["by_level"]) <= {f"Level {lv}" for lv in range(1, 6)}
    model, tok = AutoModelForCausalLM.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(tok, Qwen2Tokenizer) and model.config.hidden_size == SPEC.hidden_size
