"""Resumable training state in a cell's work directory, outside the rule's outputs (which
Snakemake deletes before a rerun).

A checkpoint is ``checkpoint-<step>/``: the policy (safetensors), ``trainer_state.pt``
(optimizer state keyed by parameter name, RNG states, step, data cursor) and ``manifest.json``, written last, holding every
file's size and xxh3 hash and the cell config it was trained with. It is written in a temporary
folder and renamed into place, and older checkpoints are deleted only after that, so a kill or
a failed write at any moment leaves the previous checkpoint intact.

A checkpoint is trusted only when its files match the manifest and its config matches the
run's, up to ``train.steps`` (a larger ``steps`` continues a run). Runtime-only knobs
(``nsr_study.config.RUNTIME_ONLY``: threads, micro-batch sizes…) are left out of the comparison.
Anything else starts the run afresh, and the log says which checkpoint was rejected and why.

On several ranks (``nsr_study.distributed``) the full weights and optimizer state are gathered
to rank 0, which writes the same files: a checkpoint does not depend on the number of ranks, so
a job resumes with any ``gpus``, 1 included (tests/test_distributed.py). This costs rank 0 the
full state in CPU memory while saving (7B: 30 GB of weights and 61 GB of AdamW moments);
sharded ``torch.distributed.checkpoint`` files would avoid that and are the next step for
models past 7B.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import xxhash

from nsr_study import distributed
from nsr_study.config import RUNTIME_ONLY, flat

log = logging.getLogger("nsr_study.checkpoint")
MANIFEST = "manifest.json"


def fingerprint(cell: dict) -> dict:
    """What must match for a checkpoint to be resumed: the cell config without ``train.steps``
    and the runtime-only knobs."""
    skip = {"steps", *RUNTIME_ONLY}
    return cell | {"train": {k: v for k, v in cell["train"].items() if k not in skip}}


def _digest(path: Path) -> str:
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> dict:
    return {p.name: {"bytes": p.stat().st_size, "xxh3": _digest(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


def rng_state() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(model, folder: Path) -> None:
    """The policy as plain HF safetensors in ``folder``, however many ranks hold it: a sharded
    policy is gathered to rank 0, which writes it (collective: every rank must call)."""
    rank, _ = distributed.world()
    weights = distributed.full_state_dict(model) if distributed.is_sharded(model) else None
    if rank == 0:
        model.save_pretrained(folder, state_dict=weights, safe_serialization=True)


def optimizer_state(model, optimizer) -> dict:
    """The optimizer state keyed by parameter name, full (on rank 0 when sharded; collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    if distributed.is_sharded(model):
        return distributed.full_optimizer_state(model, optimizer)
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))


def save(work: Path, model, optimizer, step: int, cursor: int, cell: dict) -> Path:
    """Write ``checkpoint-<step>`` completely (manifest last), rename it into place, then delete
    older checkpoints. A failed write removes its partial folder and raises, naming the
    checkpoint that stays valid. On several ranks every rank calls it; rank 0 writes."""
    target, tmp = work / f"checkpoint-{step}", work / f".checkpoint-{step}.tmp"
    optim = optimizer_state(model, optimizer)
    if distributed.world()[0] != 0:
        save_weights(model, tmp)
        distributed.barrier()
        return target
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_weights(model, tmp)
        torch.save(dict(optimizer=optim, rng=rng_state(), step=step, cursor=cursor), tmp / "trainer_state.pt")
        manifest = dict(step=step, cursor=cursor, config=fingerprint(cell), files=_files(tmp))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except Exception as e:  # OSError, or safetensors' own error type for a full disk
        shutil.rmtree(tmp, ignore_errors=True)
        kept = [p.name for p in checkpoints(work)]
        raise RuntimeError(f"writing checkpoint {target} failed ({e}); "
                           f"{'the previous checkpoint ' + kept[0] + ' is intact' if kept else 'no earlier checkpoint exists'}") from e
    for old in checkpoints(work):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return target


def checkpoints(work: Path) -> list[Path]:
    """Checkpoint folders, newest step first."""
    found = [p for p in work.glob("checkpoint-*") if p.is_dir() and p.name.split("-", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]), reverse=True)


def rejection(ckpt: Path, cell: dict) -> str | None:
    """Why ``ckpt`` cannot be resumed for ``cell`` (None: it can)."""
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        return f"unreadable {MANIFEST} ({e})"
    for name, want in manifest["files"].items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {want['bytes']}"
        if _digest(path) != want["xxh3"]:
            return f"{name} does not match its hash in the manifest (corrupt)"
    old, new = flat(manifest["config"]), flat(fingerprint(cell))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        return f"it was trained with another config (changed: {', '.join(changed)})"
    if manifest["step"] > cell["train"]["steps"]:
        return f"its step {manifest['step']} is past train.steps = {cell['train']['steps']}"
    return None


def resumable(work: Path, cell: dict) -> Path | None:
    """The newest checkpoint that can be resumed, logging every newer one rejected and why."""
    for ckpt in checkpoints(work):
        why = rejection(ckpt, cell)
        if why is None:
            return ckpt
        log.warning("not resuming from %s: %s", ckpt, why)
    return None


def load_state(ckpt: Path, model, optimizer) -> tuple[int, int]:
    """Restore the optimizer and RNG states of a verified checkpoint; returns (step, cursor).
    ``trainer_state.pt`` is a pickle written by ``save`` and checked against the manifest. A
    sharded ``model`` takes its share of the full optimizer state, whatever number of ranks
    wrote it."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    if distributed.is_sharded(model):
        distributed.load_optimizer_state(model, optimizer, state["optimizer"])
    else:
        set_optimizer_state_dict(model, optimizer, optim_state_dict=state["optimizer"])
    set_rng_state(state["rng"])
    return state["step"], state["cursor"]


def save_policy(model, tokenizer, folder: str | Path, dtype: str) -> None:
    """Save the final policy in the compute dtype (bf16 on a GPU: half the bytes of fp32 weights,
    and the dtype evaluation computes in, ``nsr_study.evaluate`` loads it so), then read the
    files back and compare every tensor with the model's: a policy that does not verify raises,
    so no checkpoint is deleted on its strength (``remove_checkpoints``). A sharded policy is
    gathered to rank 0, which writes and checks it (collective: every rank calls)."""
    from safetensors.torch import load_file

    Path(folder).mkdir(parents=True, exist_ok=True)
    if distributed.is_sharded(model):
        full = distributed.full_state_dict(model)
        if distributed.world()[0] != 0:
            return
        state = {k: v.to(getattr(torch, dtype)) for k, v in full.items()}
        model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    else:
        model = model.to(getattr(torch, dtype))
        model.save_pretrained(folder, safe_serialization=True)
        state = model.state_dict()
    tokenizer.save_pretrained(folder)
    saved = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        saved |= load_file(f)
    wrong = sorted(k for k, v in saved.items() if k not in state or not torch.equal(v, state[k].detach().cpu()))
    if not saved or wrong:
        raise RuntimeError(f"the policy saved in {folder} does not read back as the trained weights "
                           f"({', '.join(wrong[:5]) or 'no weights found'})")


def remove_checkpoints(work: Path) -> None:
    """Delete a cell's checkpoints (``train.keep_checkpoint: false``), once its policy is saved
    and verified: 12 bytes per parameter each."""
    for ckpt in checkpoints(work):
        shutil.rmtree(ckpt)
        log.info("deleted %s (train.keep_checkpoint is false; the policy is saved and verified)", ckpt)
