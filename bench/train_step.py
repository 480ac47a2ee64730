"""Step time and peak memory of one training step on a Qwen2.5-shaped model (random init from
its config, so nothing is downloaded), through the pipeline's own rollout/log-prob/update code
with the HF backend. Rewards are random 0/1 (grading is benchmarked in bench/grading.py).
MFU of the π_old log-probs and of the update: 2·N and 6·N (8·N with gradient checkpointing)
FLOPs per prompt + response token over the card's dense bf16 peak (``nsr_study.flops``).

    python bench/train_step.py --shape 0.5b --steps 3            # on a GPU: bf16 + checkpointing
    python bench/train_step.py --shape 0.5b --compiled           # rollouts: static KV cache + CUDA graphs
    python bench/train_step.py --shape tiny --device cpu --steps 2 --max-new-tokens 16
"""

import argparse
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study.flops import forward_flops, mfu, peak_bf16_tflops, update_flops
from nsr_study.objectives import advantages
from nsr_study.rollout import HFBackend
from nsr_study.batch import Sample
from nsr_study.update import fill_logprobs, policy_update

SHAPES = {  # Qwen2.5-*-Instruct config.json values (7B: its own vocabulary size, untied head)
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True),
    "3b": dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
               intermediate_size=11008, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
               intermediate_size=18944, vocab_size=152064, tie_word_embeddings=False),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=151936, tie_word_embeddings=True),
}
MODELS = {shape: [f"Qwen/Qwen2.5-{shape.upper()}-Instruct", f"Qwen/Qwen2.5-{shape.upper()}"]
          for shape in SHAPES if shape != "tiny"}  # the hub models of each shape
EOS, PAD = 151645, 151643  # <|im_end|>, <|endoftext|>


class IdsOnlyTokenizer:
    """What HFBackend needs from a tokenizer when nothing is graded."""

    eos_token_id, pad_token_id = EOS, PAD

    def batch_decode(self, ids, skip_special_tokens=True):
        return ["" for _ in ids]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, default="0.5b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--rollouts", type=int, default=2)
    ap.add_argument("--minibatch", type=int, default=32)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--compiled", action="store_true", help="HFBackend(compiled=True): static KV cache, compiled decoding")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: by device name)")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    card = torch.cuda.get_device_name() if gpu else "cpu"
    peak = args.peak_tflops or peak_bf16_tflops(card)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**SHAPES[args.shape], eos_token_id=EOS)).to(args.device)
    if gpu:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    cfg = dict(loss_agg="token-mean", max_new_tokens=args.max_new_tokens, micro_batch_size=args.micro_batch,
               dtype="bfloat16" if gpu else "float32", logprob_chunk=1024, clip_eps=0.2, entropy_coef=0.0,
               kl_coef=0.0, minibatch_size=args.minibatch, grad_clip=1.0, temperature=1.0)
    backend = HFBackend(model, IdsOnlyTokenizer(), batch_size=args.prompts * args.rollouts, compiled=args.compiled,
                        dtype="bfloat16" if gpu else "float32")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.shape}: {n_params / 1e6:.0f} M parameters on {args.device} ({card}); "
          f"{'compiled static-cache' if args.compiled else 'plain'} HF rollouts; MFU against "
          f"{f'{peak} TFLOP/s' if peak else 'n/a (unknown card: pass --peak-tflops)'}")
    for step in range(1, args.steps + 1):
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        prompts = torch.randint(0, 150000, (args.prompts, args.prompt_tokens)).tolist()
        t = {}
        t0 = time.perf_counter()
        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=gpu):
            ro = backend.generate(prompts, n=args.rollouts, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens)
        t["rollout"] = time.perf_counter() - t0
        rewards = torch.randint(0, 2, (len(ro),)).float()
        adv = advantages(rewards, torch.arange(args.prompts).repeat_interleave(args.rollouts), "W_REINFORCE", lam=0.1)
        samples = [Sample(p, r, a) for p, r, a in zip(ro.prompt_ids, ro.response_ids, adv.tolist())]
        t0 = time.perf_counter()
        fill_logprobs(model, samples, "old_logp", cfg, PAD, args.device)
        t["logprob"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        up = policy_update(model, opt, samples, cfg, PAD, args.device, shuffle_seed=step)
        backend.sync(model)
        if gpu:
            torch.cuda.synchronize()
        t["update"] = time.perf_counter() - t0
        tokens = sum(s.n_response for s in samples)
        seen = sum(len(s.ids) for s in samples)  # prompt + response tokens through each pass
        flops = dict(logprob=forward_flops(n_params, seen), update=update_flops(n_params, seen, recompute=gpu))
        rates = ", ".join(f"{k} {f / t[k] / 1e12:.3g} TFLOP/s" + (f" = MFU {mfu(f, t[k], peak):.1%}" if peak else "")
                          for k, f in flops.items())
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if gpu else "n/a"
        print(f"step {step}: {sum(t.values()):.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in t.items())}); "
              f"{tokens} response tokens, {tokens / t['rollout']:.0f} tok/s rollout; {up['optimizer_steps']} optimizer "
              f"steps; {rates}; peak GPU memory {memory}")


if __name__ == "__main__":
    main()
