"""The vLLM backend on N ranks, for tests/test_vllm.py: run as a script under
``torchrun --nproc_per_node N`` (gloo, CPU) with a tiny model directory, a perturbed copy of
it and an output file. Each rank shards the policy (FSDP2), builds its own engine (TRL's
colocate mode) and generates its share of the prompts, keyed by position as the trainer keys
them; rank 0 saves the gathered results (JSON)."""

import json
import sys

from conftest import study_config

from nsr_study import distributed
from nsr_study.data import read_jsonl
from nsr_study.loading import load_causal_lm, load_tokenizer
from nsr_study.prompts import problem_prompt_ids
from nsr_study.rollout import make_backend

# (name, number of prompts, n, temperature, seed, keys): 5 prompts split 3 + 2, keyed by position
# (training) or by problem id (evaluation); 1 prompt leaves rank 1 an empty share (a generate
# call without requests)
CALLS = [("sampled", 5, 3, 1.0, 1, "position"), ("greedy", 5, 1, 0.0, 0, "position"),
         ("alone", 1, 2, 1.0, 2, "position"), ("by_id", 5, 2, 1.0, 3, "id")]
MAX_NEW_TOKENS = 16


def keys(kind: str, positions: list[int]) -> list:
    return positions if kind == "position" else [f"train-{i}" for i in positions]


def generate_share(backend, prompts, n, temperature, seed, kind="position") -> list:
    rank, ranks = distributed.world()
    positions = list(distributed.share(range(len(prompts)), rank, ranks))
    ro = backend.generate([prompts[i] for i in positions], n=n, temperature=temperature, top_p=1.0,
                          max_new_tokens=MAX_NEW_TOKENS, seed=seed, keys=keys(kind, positions))
    return distributed.gather(list(zip(ro.response_ids, ro.truncated)))


def main(model_dir: str, perturbed_dir: str, out: str) -> None:
    distributed.init("cpu", 10)
    tokenizer = load_tokenizer(model_dir)
    prompts = problem_prompt_ids(tokenizer, read_jsonl(f"{model_dir}/../train.jsonl")[:6], study_config()["prompt"])
    policy = distributed.shard(load_causal_lm(model_dir, "cpu"), "cpu")
    cfg = dict(dtype="float32", max_prompt_tokens=256, max_new_tokens=MAX_NEW_TOKENS, gpu_memory_utilization=0.5)
    backend = make_backend("vllm", policy, tokenizer, model_dir, cfg, seed=0)  # its first sync: sharded weights
    results = {name: generate_share(backend, prompts[:count], n, t, s, kind) for name, count, n, t, s, kind in CALLS}
    perturbed = distributed.shard(load_causal_lm(perturbed_dir, "cpu"), "cpu")
    backend.sync(perturbed)
    results["perturbed_greedy"] = generate_share(backend, prompts[:5], 1, 0.0, 0)
    backend.sync(policy)
    results["restored_greedy"] = generate_share(backend, prompts[:5], 1, 0.0, 0)
    if distributed.world()[0] == 0:
        with open(out, "w") as f:
            json.dump(results, f)
    backend.close()
    distributed.finish()


if __name__ == "__main__":
    main(*sys.argv[1:])
