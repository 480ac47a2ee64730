"""Checkpoints across rank counts for tests/test_distributed.py. As a script under ``torchrun
--nproc_per_node 2`` (gloo), with arguments ``CKPT SAVE_DIR OUT``: shard a fresh ``model(1)``,
load checkpoint ``CKPT`` (written by one process) into it and its AdamW, save the result as
``checkpoint-3`` in ``SAVE_DIR`` from both ranks, then try ``checkpoint-4`` with rank 1's disk
full. Rank 0 writes to ``OUT`` the full state the ranks loaded, the bytes each rank held in the
state it saved, the files each rank hashed for ``checkpoint-3``'s manifest and each rank's
error from the failed write."""

import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study import checkpoint

CELL = {"model_id": "m", "objective": "NSR", "seed": 0, "train": {"steps": 4, "lr": 1e-3}}


def model(seed: int):
    """426k parameters (5 MB of training state), so tensor bytes dominate DCP's per-item
    overhead in the shard files; every sharded dimension is even."""
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=256, vocab_size=512,
                                        tie_word_embeddings=False))


def optimizer(m):
    return torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)


def full_state(m, opt) -> dict:
    """Weights and optimizer state keyed by parameter name, full, on CPU (rank 0 only when
    sharded): what both sides of a resharding must agree on."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    weights, optim = get_state_dict(m, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return dict(model=weights, optimizer=optim)


def local_bytes(state: dict) -> int:
    """Bytes of the tensors this rank holds in a (nested) state dict: its shards of DTensors."""
    if isinstance(state, dict):
        return sum(local_bytes(v) for v in state.values())
    if isinstance(state, list):
        return sum(local_bytes(v) for v in state)
    if isinstance(state, torch.Tensor):
        t = state.to_local() if hasattr(state, "to_local") else state
        return t.numel() * t.element_size()
    return 0


def failed_write(save_dir: Path, m, opt) -> str:
    """This rank's error when rank 1 cannot write its shard of ``checkpoint-4``."""
    import errno

    import torch.distributed as dist
    import torch.distributed.checkpoint.filesystem as fs

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if dist.get_rank() == 1:
        fs._write_item = disk_full
    try:
        checkpoint.save(save_dir, m, opt, 4, 32, CELL)
    except RuntimeError as e:
        return str(e)
    return "no error"


if __name__ == "__main__":
    import torch.distributed as dist

    from nsr_study.distributed import gather, init, shard

    torch.set_num_threads(1)
    init("cpu", 10)
    ckpt, save_dir, out = map(Path, sys.argv[1:4])
    m = shard(model(1), "cpu")
    opt = optimizer(m)
    checkpoint.load_state(ckpt, m, opt)
    held = gather([local_bytes(checkpoint.training_state(m, opt))])
    digest, hashed = checkpoint._digest, []
    checkpoint._digest = lambda path: hashed.append(path.name) or digest(path)
    checkpoint.save(save_dir, m, opt, 3, 24, CELL)
    checkpoint._digest = digest
    hashed = gather([sorted(hashed)])
    loaded = full_state(m, opt)
    errors = gather([failed_write(save_dir, m, opt)])
    if dist.get_rank() == 0:
        torch.save(dict(loaded=loaded, held=held, errors=errors, hashed=hashed), out)
    dist.destroy_process_group()
