"""Generation throughput (generated tokens/s) of the HF rollout paths at a Qwen2.5 shape
(random init from its config, nothing downloaded; shapes from bench/train_step.py), for the
batch sizes of training (64) and evaluation (512 and up):

- ``plain``: ``HFBackend`` as the trainer uses it (fp32 weights, bf16 autocast on a GPU,
  dynamic KV cache; bound by kernel launches on a GPU);
- ``compiled``: ``HFBackend(compiled=True)`` (a bf16 copy, static KV cache, CUDA graphs);
- ``paged``: transformers' continuous batching (``generate_batch``, paged attention) on a bf16
  copy, GPU only (on a CPU it sizes its cache from system memory: it was OOM-killed at 21 GB on
  the 23 GB test machine). Not a backend yet: it runs in a background thread, where the
  trainer's autocast does not reach, and its API changes between transformers releases;
  measured to compare.

Every sequence is a random ``--prompt-tokens`` prompt sampled at T = 1 to ``--new-tokens``
tokens (random weights almost never emit EOS, so every call is the worst case). The first
call per engine and batch compiles/warms up and is timed separately; then ``--repeats`` calls
give mean ± sd.

    python bench/generate.py --shape 0.5b                  # on a GPU: every engine at batch 64 and 512
    python bench/generate.py --shape tiny --device cpu --batch 4 --new-tokens 8
"""

import argparse
import copy
import statistics
import time

import torch
from train_step import EOS, PAD, SHAPES, IdsOnlyTokenizer
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from nsr_study.rollout import HFBackend

ENGINES = ("plain", "compiled", "paged")


def hf_engine(model, batch: int, compiled: bool, device: str, new_tokens: int):
    """One call of ``batch`` sequences through HFBackend, as in training; returns tokens generated."""
    gpu = device.startswith("cuda")
    backend = HFBackend(model, IdsOnlyTokenizer(), batch_size=batch, compiled=compiled,
                        dtype="bfloat16" if gpu else "float32")

    def call(prompts):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=gpu):
            ro = backend.generate(prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens)
        return sum(len(r) for r in ro.response_ids)

    return call


def paged_engine(model, device: str, new_tokens: int):
    """One ``generate_batch`` call over all prompts (continuous batching sizes its own batches).
    Each call sets up its own manager (paged KV cache of most of the free GPU memory, CUDA graph
    warm-up) and tears it down, as a backend calling it once per step would; a persistent
    manager would keep that memory from the trainer."""
    runner = copy.deepcopy(model).to(torch.bfloat16 if device.startswith("cuda") else torch.float32).eval()
    config = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=None, max_new_tokens=new_tokens,
                              eos_token_id=EOS, pad_token_id=PAD)

    def call(prompts):
        out = runner.generate_batch(prompts, generation_config=config, max_new_tokens=new_tokens)
        return sum(len(o.generated_tokens) for o in out.values())

    return call


def timed(call, prompts, device: str) -> tuple[int, float]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    tokens = call(prompts)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return tokens, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, default="0.5b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--engine", choices=ENGINES, nargs="+", default=None, help="default: all (on a CPU: not paged)")
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 512], help="sequences per call")
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**SHAPES[args.shape], eos_token_id=EOS)).to(args.device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.shape}: {n_params / 1e6:.0f} M parameters on {args.device} "
          f"({torch.cuda.get_device_name() if gpu else 'cpu'}, torch {torch.__version__}); "
          f"prompts of {args.prompt_tokens} tokens, {args.new_tokens} new tokens, T = 1")
    engines = args.engine or [e for e in ENGINES if gpu or e != "paged"]
    if "paged" in engines and not gpu:
        ap.error("--engine paged runs on a GPU only (on a CPU it sizes its KV cache from system memory)")
    for engine in engines:
        for batch in args.batch:
            call = (paged_engine(model, args.device, args.new_tokens) if engine == "paged" else
                    hf_engine(model, batch, engine == "compiled", args.device, args.new_tokens))
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            rates = []
            for i in range(args.repeats + 1):
                prompts = torch.randint(0, 150000, (batch, args.prompt_tokens)).tolist()
                tokens, seconds = timed(call, prompts, args.device)
                if i == 0:
                    print(f"{engine:8s} batch {batch:4d}: first call {seconds:.1f} s (warm-up, compilation)")
                else:
                    rates.append(tokens / seconds)
            sd = statistics.stdev(rates) if len(rates) > 1 else float("nan")
            memory = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if gpu else "n/a"
            print(f"{engine:8s} batch {batch:4d}: {statistics.mean(rates):,.0f} ± {sd:,.0f} tokens/s over "
                  f"{len(rates)} calls ({tokens} tokens per call, {seconds / args.new_tokens * 1e3:.1f} ms per "
                  f"decoding step in the last); peak GPU memory {memory}")
            del call
            if gpu:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
