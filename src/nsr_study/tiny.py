"""Tiny Qwen2-architecture models with a real prior, built offline for the CPU demo.

The demo must exercise the study's own code path — ``AutoTokenizer`` /
``AutoModelForCausalLM.from_pretrained(dir)``, the chat template, EOS handling, math-verify
rewards — without downloading Qwen, in seconds per model. So each tiny model is built here:

- **Tokenizer**: byte-level BPE trained with ``tokenizers`` on the synthetic texts, with the
  very normalizer, pre-tokenizer and decoder that ``Qwen2Tokenizer`` installs. ``AutoTokenizer``
  loads a tokenizer saved beside a Qwen2 config *as* ``Qwen2Tokenizer``, which rebuilds that
  pipeline from the vocab and merges (tests/test_tiny.py checks it); built any other way, the ids would change on
  load. Special tokens and ChatML template as in Qwen2.5-Instruct: ``<|endoftext|>`` pads,
  ``<|im_end|>`` ends a turn (EOS). The natural vocabulary is small (~400: digits are split
  one per token, as in Qwen), so sequences stay short.
- **Model**: ``Qwen2ForCausalLM`` from a ``Qwen2Config`` sized by a :class:`TinySpec`, float32,
  saved with ``save_pretrained`` (safetensors) beside the tokenizer.
- **Prior**: a short SFT on the train split (loss on the solution and its EOS only), then greedy
  validation accuracy graded by math-verify and the pass rate of T=1 samples (the RL stage
  needs groups that mix correct and incorrect answers), written to ``prior.json`` so that
  the strength of each prior is measured, not assumed.
- **A mixture prior**: in a share ``wrong_share`` of the SFT draws the solution's final answer
  follows a systematic wrong rule (one more than its own worked steps give, ``off_by_one``),
  decided afresh at every draw. The model so learns a right and a wrong behaviour side by
  side, as a pretrained model carries habits that RL can unlearn everywhere at once: most
  groups of samples mix correct and incorrect answers, and one update on some prompts
  carries over to the rest. Without it a tiny model's errors are slips specific to each
  problem, and RL has nothing that generalises to learn from (issue 9).
- **A share per level**: ``wrong_share`` may list one share per level (1–5). With shares rising
  with the level, the harder problems carry the wrong habit more often, and at the evaluation's
  temperature and top-p a model then misses the hardest ones in every sample: the base model's
  pass@k at large k stays below 1, so whether training widens or narrows it can be seen.
- **A two-strategy prior** (the positive control, ``rare_share`` set): on the two-strategy sums
  of ``nsr_study.synthetic`` the SFT writes each solution by the rare strategy B with
  probability ``rare_share``, else by the common A, on every train problem and on its twin with
  the "counting the last number twice" clause (which only B honours), each strategy with its
  own share of wrong answers (``wrong_share``, ``rare_wrong_share``): its reliability. A wrong
  answer is off by one, or with ``rare_slip`` B's own slip, which leaves a number out.
  RL then trains on the clause-free problems only, where both strategies are right.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from tqdm.auto import tqdm
from transformers import (AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast,
                          Qwen2Config, Qwen2ForCausalLM)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from nsr_study.answers import last_boxed
from nsr_study.grading import Grader
from nsr_study.prompts import messages, problem_prompt_ids
from nsr_study.rollout import HFBackend
from nsr_study.synthetic import CLAUSE, parse_strategy_problem, strategy_problem, strategy_solution

log = logging.getLogger("nsr_study")

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# Qwen2.5-Instruct's ChatML, without its default system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Size of one tiny model and its SFT: the ``tiny`` entry of a model in the config, whose
    defaults live in the schema (``models[].tiny``) only."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int  # an upper bound: BPE stops when no pair is left to merge
    sft_steps: int
    batch_size: int
    lr: float
    warmup_frac: float
    weight_decay: float
    max_new_tokens: int  # for the prior check; the demo's train.max_new_tokens
    t1_samples: int  # samples per validation problem at T=1
    wrong_share: float | list[float]  # share of SFT draws whose final answer follows off_by_one (or one per level)
    rare_share: float | None  # None: the sums prior; else the two-strategy prior's share of strategy B
    rare_wrong_share: float | None  # strategy B's share of wrong answers (None: wrong_share, as A's)
    rare_slip: bool  # B's wrong answers: its own slip (True) or the off_by_one it shares with A

    def wrong_share_of(self, level: str) -> float:
        """The share for a record's level ("Level 3"): the one share, or the level's entry."""
        if isinstance(self.wrong_share, (int, float)):
            return float(self.wrong_share)
        return float(self.wrong_share[int(level.split()[-1]) - 1])


def corpus(records: list[dict], prompt: dict, spec: TinySpec) -> list[str]:
    """The texts the tokenizer sees: the prompt's turns as the chat template renders them
    (role, newline, content), and the right solutions of each strategy (``solutions``)."""
    turns = {f"{m['role']}\n{m['content']}" for r in records for m in messages(r["problem"], prompt)}
    return sorted(turns) + [f"assistant\n{t}" for r in records for _, _, t, _ in solutions(r, spec)]


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Qwen2Tokenizer's own pipeline (so it survives AutoTokenizer), ChatML
    specials at ids 0-2 and the chat template. Deterministic for the same texts."""
    tok = Tokenizer(BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD,
                                   extra_special_tokens=[IM_START], chat_template=CHAT_TEMPLATE)


def build_model(spec: TinySpec, tokenizer) -> Qwen2ForCausalLM:
    """A randomly initialised float32 Qwen2 LM (tied embeddings) whose generation config ends
    at ``<|im_end|>`` and pads with ``<|endoftext|>``, as Qwen2.5-Instruct's does. 2,048
    positions (no weights: rotary positions) hold a competition problem (AIME 2025's longest is
    ~1,000 characters, more tokens in a vocabulary learnt on sums), so the micro run evaluates
    the paper's test sets too."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    return model


def off_by_one(solution: str) -> str:
    """The mixture prior's wrong rule: the same worked steps, then a final boxed answer one
    more than they give (integer answers; the demo's synthetic problems have only those)."""
    answer = last_boxed(solution)
    head, _, tail = solution.rpartition(f"\\boxed{{{answer}}}")
    return f"{head}\\boxed{{{int(answer) + 1}}}{tail}"


def sft_records(records: list[dict], spec: TinySpec) -> list[dict]:
    """The SFT's problems: the train records, and with the two-strategy prior each one's twin
    with the clause too (the B-only problems, which RL never sees)."""
    if spec.rare_share is None:
        return records
    twins = []
    for r in records:
        digits, clause = parse_strategy_problem(r["problem"])
        if clause:
            raise ValueError(f"train problem {r['problem']!r} has the clause{CLAUSE!r}: the two-strategy "
                             "prior's train problems are the clause-free ones (nsr_study.synthetic.generate_strategies)")
        twins.append(r | {"problem": strategy_problem(digits, clause=True)})
    return records + twins


def solutions(record: dict, spec: TinySpec) -> list[tuple[float, float, str, str]]:
    """(probability, share of wrong answers, right solution, wrong solution) of each strategy the
    SFT may write for ``record``: the record's own solution with the sums prior; A and B with the
    two-strategy one. A wrong solution is the right one's ``off_by_one``, or with ``rare_slip``
    B's own slip (a number left out), so that unlearning A's mistake does not also fix B's."""
    share = spec.wrong_share_of(record["level"])
    if spec.rare_share is None:
        return [(1.0, share, record["solution"], off_by_one(record["solution"]))]
    rare_wrong = share if spec.rare_wrong_share is None else spec.rare_wrong_share
    a, b = (strategy_solution(record["problem"], s) for s in "AB")
    b_wrong = strategy_solution(record["problem"], "B", slip=True) if spec.rare_slip else off_by_one(b)
    return [(1 - spec.rare_share, share, a, off_by_one(a)), (spec.rare_share, rare_wrong, b, b_wrong)]


def sft_targets(record: dict, spec: TinySpec) -> list[tuple[float, str]]:
    """The solutions the SFT may write for ``record`` with their probabilities (summing to 1):
    each strategy's wrong version, then its right one (so the sums prior draws as it always did)."""
    return [t for p, share, right, wrong in solutions(record, spec)
            for t in ((p * share, wrong), (p * (1 - share), right))]


def sft_examples(tokenizer, records: list[dict], prompt: dict, spec: TinySpec
                 ) -> list[tuple[list[int], list[tuple[float, list[int]]]]]:
    """(prompt ids, [(probability, target ids)]) per SFT problem (``sft_records``): the chat
    prompt, and each of its ``sft_targets`` followed by EOS."""
    records = sft_records(records, spec)
    prompts = problem_prompt_ids(tokenizer, records, prompt)
    eos = [tokenizer.eos_token_id]
    targets = [sft_targets(r, spec) for r in records]
    ids = iter(tokenizer([t for ts in targets for _, t in ts], add_special_tokens=False)["input_ids"])
    return [(p, [(prob, next(ids) + eos) for prob, _ in ts]) for p, ts in zip(prompts, targets)]


def draw(targets: list[tuple[float, list[int]]], u: float) -> list[int]:
    """The target whose cumulative probability first exceeds ``u`` (uniform in [0, 1))."""
    total = 0.0
    for prob, ids in targets:
        total += prob
        if u < total:
            return ids
    return targets[-1][1]  # u within rounding of 1


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 (no loss) on prompt and padding tokens."""
    width = max(len(p) + len(t) for p, t in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    att = torch.zeros_like(ids)
    for i, (p, t) in enumerate(examples):
        ids[i, : len(p) + len(t)] = torch.tensor(p + t)
        labels[i, len(p) : len(p) + len(t)] = torch.tensor(t)
        att[i, : len(p) + len(t)] = 1
    return {"input_ids": ids, "attention_mask": att, "labels": labels}


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def batches(lengths: list[int], batch_size: int, rng: random.Random, pool: int = 8):
    """Endless batches of indices: every epoch a fresh shuffle, then examples of similar length
    grouped within pools of ``pool`` batches (less padding), the batches of a pool in random order."""
    while True:
        order = rng.sample(range(len(lengths)), len(lengths))
        for start in range(0, len(order), pool * batch_size):
            chunk = sorted(order[start : start + pool * batch_size], key=lengths.__getitem__)
            cut = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
            yield from rng.sample(cut, len(cut))


def sft(model, examples, pad_id: int, spec: TinySpec, seed: int) -> list[float]:
    """AdamW on the token-mean loss of target tokens, linear warm-up then cosine decay; each
    drawn example takes one of its targets with its probability (``sft_examples``, ``draw``).
    Deterministic for a seed. Returns the loss of every step."""
    torch.manual_seed(seed)
    coin = random.Random(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    warmup = max(1, int(spec.warmup_frac * spec.sft_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, spec.sft_steps, warmup))
    lengths = [len(p) + max(len(t) for _, t in ts) for p, ts in examples]
    draws = batches(lengths, spec.batch_size, random.Random(seed))
    losses = []
    model.train()
    bar = tqdm(range(spec.sft_steps), desc="sft", unit="step", mininterval=1.0)
    for step in bar:
        pairs = [(examples[i][0], draw(examples[i][1], coin.random())) for i in next(draws)]
        loss = model(**collate(pairs, pad_id)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if (step + 1) % max(1, spec.sft_steps // 10) == 0:
            log.info("sft step %d/%d loss %.4f lr %.2e", step + 1, spec.sft_steps, losses[-1], sched.get_last_lr()[0])
    model.eval()
    return losses


def evaluate(model, tokenizer, records: list[dict], prompt: dict, grader: Grader, temperature: float, n: int,
             max_new_tokens: int, seed: int) -> dict:
    """Accuracy of ``n`` responses per problem (overall, by level), the share cut at
    ``max_new_tokens``, and the share of problems whose n responses are mixed."""
    prompts = problem_prompt_ids(tokenizer, records, prompt)
    backend = HFBackend(model, tokenizer, batch_size=len(prompts) * n)  # one call: tiny models, small batch memory
    out = backend.generate(prompts, n=n, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
    graded = grader.grade_many(out.texts, [r["answer"] for r in records for _ in range(n)])
    per_problem = [graded.scores[i * n : (i + 1) * n] for i in range(len(records))]
    by_level = defaultdict(list)
    for r, s in zip(records, per_problem):
        by_level[r["level"]].extend(s)
    return {
        "temperature": temperature, "samples_per_problem": n, "problems": len(records),
        "accuracy": sum(graded.scores) / len(graded.scores),
        "by_level": {lv: sum(s) / len(s) for lv, s in sorted(by_level.items())},
        "truncated": sum(out.truncated) / len(out),
        "mixed_problems": sum(0 < sum(s) < n for s in per_problem) / len(records),
        "statuses": dict(graded.counts),
    }


def build(spec: dict | TinySpec, train_records: list[dict], val_records: list[dict], outdir: str | Path,
          prompt: dict, seed: int, grader_workers: int) -> dict:
    """Tokenizer, model, SFT and prior check into ``outdir``; returns what ``prior.json`` holds.

    The SFT uses the tokenizer reloaded through ``AutoTokenizer`` — exactly what every later
    stage loads. Call from a script guarded by ``if __name__ == "__main__"`` (grading spawns
    worker processes).
    """
    spec = spec if isinstance(spec, TinySpec) else TinySpec(**spec)
    outdir = Path(outdir)
    start = time.perf_counter()
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(corpus(sft_records(train_records, spec), prompt, spec), spec.vocab_size)
    tokenizer.save_pretrained(outdir)
    model = build_model(spec, tokenizer)
    model.config.save_pretrained(outdir)  # so AutoTokenizer sees the Qwen2 config, as consumers will
    tokenizer = AutoTokenizer.from_pretrained(outdir)
    examples = sft_examples(tokenizer, train_records, prompt, spec)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny model %s: %d parameters, vocab %d, %d SFT examples (longest %d tokens)", asdict(spec),
             n_params, len(tokenizer), len(examples), max(len(p) + len(t) for p, ts in examples for _, t in ts))
    losses = sft(model, examples, tokenizer.pad_token_id, spec, seed)
    model.save_pretrained(outdir)
    sft_s = time.perf_counter() - start
    with Grader(workers=grader_workers) as grader:
        greedy = evaluate(model, tokenizer, val_records, prompt, grader, 0.0, 1, spec.max_new_tokens, seed)
        sampled = evaluate(model, tokenizer, val_records, prompt, grader, 1.0, spec.t1_samples, spec.max_new_tokens, seed)
    prior = {"spec": asdict(spec), "seed": seed, "parameters": n_params, "vocab_size": len(tokenizer),
             "sft": {"first_loss": losses[0], "final_loss": sum(losses[-10:]) / len(losses[-10:]),
                     "seconds": sft_s},
             "greedy": greedy, "sampled_t1": sampled, "seconds": time.perf_counter() - start}
    (outdir / "prior.json").write_text(json.dumps(prior, indent=2) + "\n")
    log.info("prior: greedy val accuracy %.3f (by level %s, truncated %.2f); T=1 pass rate %.3f with %.0f%% of "
             "problems mixed; %.1f s", greedy["accuracy"], {k: round(v, 2) for k, v in greedy["by_level"].items()},
             greedy["truncated"], sampled["accuracy"], 100 * sampled["mixed_problems"], prior["seconds"])
    return prior

