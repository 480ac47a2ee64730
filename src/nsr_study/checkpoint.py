"""Resumable training state in a cell's work directory, outside the rule's outputs (which
Snakemake deletes before a rerun).

A checkpoint is ``checkpoint-<step>/``, in one format for any number of ranks:

- the weights and AdamW state, keyed by parameter name, saved with
  ``torch.distributed.checkpoint`` (DCP): each rank writes its own shards to ``__<rank>_0.distcp``
  and rank 0 the index ``.metadata``, so no rank gathers the full state (7B: 30 GB of fp32
  weights and 61 GB of moments would otherwise pass through rank 0's host memory);
- ``trainer_state.pt``: step, data cursor and rank 0's RNG states, written by rank 0;
- ``manifest.json``, written last by rank 0: every file's size and xxh3 hash (each rank hashes
  its own shards, at the same time, and rank 0 collects them: no collective waits on one rank
  hashing them all), the number of ranks that wrote it, the cell config it was trained with,
  and the fingerprint of the code that trained it (``training_code``).

It is written in a temporary folder and renamed into place, and older checkpoints are deleted
only after that, so a kill or a failed write at any moment leaves the previous checkpoint
intact. A run resumes with any number of ranks, 1 included: the model is built from the cell's
``model_id`` and sharded as usual, then each rank reads its pieces and DCP reshards
(tests/test_distributed.py: 2 → 2, 2 → 1, 1 → 2).

A checkpoint is trusted only when its files match the manifest, its config matches the run's,
up to ``train.steps`` (a larger ``steps`` continues a run), and it was written by the same
training code: the source of ``nsr_study.train`` and of every package module it imports
(``nsr_study.sources``), so after a fix to the trainer, an objective or the sampling no run
continues what the old code trained. Runtime-only knobs (``nsr_study.config.RUNTIME_ONLY``:
threads, micro-batch sizes…) are left out of the comparison, as is the number of ranks.

A finished run is not resumed either: ``mark_finished`` records its last checkpoint once the
policy and metrics are written, and a later job of the same cell with the same ``train.steps``
(``snakemake --forcerun``, or outputs deleted) trains from step 0 instead of returning the old
policy. A job killed at any point before that, the last checkpoint's write included, resumes
from its newest checkpoint with everything in it: weights, AdamW state, step, data cursor and
RNG states. Anything else (a checkpoint in the older safetensors format included) starts the run
afresh, and the log says in one line which checkpoint was rejected and why.

The final policy is plain HF safetensors in the compute dtype (``save_policy``): written once
per cell, it is the one place where a sharded policy is gathered to rank 0.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
import xxhash

from nsr_study import distributed
from nsr_study.config import RUNTIME_ONLY, flat
from nsr_study.sources import source_hash

log = logging.getLogger("nsr_study.checkpoint")
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.pt"  # rank 0's step, data cursor and RNG states
FORMAT = "torch.distributed.checkpoint"  # manifests before it had no format: weights were safetensors
FINISHED = "finished.json"  # the manifest hash of a finished run's last checkpoint (mark_finished)


def training_code() -> str:
    """The fingerprint of the code that trains: ``nsr_study.train`` and its package imports."""
    return source_hash("nsr_study.train")


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


def _files(paths) -> dict:
    """{file name: its size and hash} of ``paths``."""
    return {p.name: {"bytes": p.stat().st_size, "xxh3": _digest(p)} for p in sorted(paths)}


def rng_state() -> dict:
    """This process's RNG states; for CUDA only the current device's (a rank computes on one
    GPU): the states of every GPU the job sees would not restore on a job with fewer."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore ``rng_state``'s states, the CUDA one into the current device, however many GPUs
    the saving job had (checkpoints before this format kept a list, one per GPU: the current
    device's entry, when it had one)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, (list, tuple)):
            index = torch.cuda.current_device()
            cuda = cuda[index] if index < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def training_state(model, optimizer) -> dict:
    """The model and optimizer state as DCP saves and loads it: keyed by parameter name, each
    rank's own shards (DTensors) when the model is sharded, plain tensors on one rank, so no
    rank gathers the full state and any number of ranks can read it back (DCP reshards).
    Collective when sharded."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    if distributed.is_sharded(model):
        model.reshard()  # FSDP2's root stays gathered after a forward without backward
    weights, optim = get_state_dict(model, optimizer)
    return dict(model=weights, optimizer=optim)


def _dcp(action, state: dict, folder: Path) -> None:
    """``dcp.save`` or ``dcp.load`` of ``state`` in ``folder``, on every rank; without a process
    group DCP works in this process alone (the warning saying so is expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        action(state, checkpoint_id=folder)


def _reason(e: BaseException) -> str:
    """One line per failed rank for DCP's ``CheckpointException`` (which carries tracebacks)."""
    failures = getattr(e, "failures", None)
    if not failures:
        return str(e)
    return "; ".join(f"rank {r}: {traceback.format_exception_only(type(x), x)[-1].strip()}"
                     for r, (x, _) in sorted(failures.items()))


def save(work: Path, model, optimizer, step: int, cursor: int, cell: dict) -> Path | None:
    """Write ``checkpoint-<step>`` completely (manifest last), rename it into place, then delete
    older checkpoints; collective: every rank calls it and writes its own shards, rank 0 the
    rest. A failed write removes its partial folder and raises on every rank, naming the
    checkpoint that stays valid.

    Before the first optimizer step (every step so far skipped) nothing is written: a fresh
    start redoes the same seeded draws, while DCP would fill the empty AdamW state with a zero-lr
    step whose step count shifts the first real update's bias correction."""
    from torch.distributed.checkpoint import CheckpointException, save as dcp_save

    if not optimizer.state:  # the same on every rank: all take the same optimizer steps
        log.info("no checkpoint at step %d: no optimizer step yet, a fresh start redoes the same draws", step)
        return None
    target, tmp = work / f"checkpoint-{step}", work / f".checkpoint-{step}.tmp"
    rank = distributed.world()[0]
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    distributed.barrier()  # no rank writes into a stale temporary folder
    failure, shards = None, {}
    try:
        _dcp(dcp_save, training_state(model, optimizer), tmp)  # returns once every rank's shards are written
        shards = _files(tmp.glob(f"__{rank}_*.distcp"))  # each rank hashes its own shards, all at once
    except (Exception, CheckpointException) as e:  # OSError on a full disk; DCP's own error is a BaseException
        failure = e
    parts = distributed.gather([(failure is not None, shards)])
    if rank == 0 and not any(failed for failed, _ in parts):
        try:
            _seal(tmp, target, step, cursor, cell, {k: v for _, part in parts for k, v in part.items()})
        except Exception as e:
            failure = e
    _raise_if_any_failed(work, tmp, target, failure)
    if rank == 0:
        for old in checkpoints(work):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return target


def _seal(tmp: Path, target: Path, step: int, cursor: int, cell: dict, shards: dict) -> None:
    """Rank 0's part of a checkpoint, once every rank's shards are in ``tmp`` and hashed by
    their rank (``shards``): the trainer state, then the manifest of every file, then the rename
    into place."""
    torch.save(dict(rng=rng_state(), step=step, cursor=cursor), tmp / TRAINER_STATE)
    rest = [p for p in tmp.iterdir() if p.is_file() and p.name != MANIFEST and p.name not in shards]
    manifest = dict(format=FORMAT, ranks=distributed.world()[1], step=step, cursor=cursor,
                    config=fingerprint(cell), code=training_code(), files=_files(rest) | shards)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _raise_if_any_failed(work: Path, tmp: Path, target: Path, failure: BaseException | None) -> None:
    """Raise on every rank when any rank's part of the write failed (collective), after rank 0
    removed the partial folder: the job stops with the same message everywhere."""
    errors = [x for x in distributed.gather([_reason(failure) if failure else None]) if x]
    if not errors:
        return
    if distributed.world()[0] == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    kept = [p.name for p in checkpoints(work)]
    raise RuntimeError(f"writing checkpoint {target} failed ({'; '.join(dict.fromkeys(errors))}); "
                       f"{'the previous checkpoint ' + kept[0] + ' is intact' if kept else 'no earlier checkpoint exists'}"
                       ) from failure


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
    if manifest.get("format") != FORMAT:
        return f"it is in an older format ({manifest.get('format', 'HF safetensors + trainer_state.pt')}, not {FORMAT})"
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
    if manifest.get("code") != (code := training_code()):
        return (f"it was trained by other training code (source hash {manifest.get('code', 'not recorded')}, "
                f"this code's {code}: nsr_study.train or a module it imports changed)")
    if manifest["step"] > cell["train"]["steps"]:
        return f"its step {manifest['step']} is past train.steps = {cell['train']['steps']}"
    if manifest["step"] == cell["train"]["steps"] and _finished(ckpt.parent) == _digest(ckpt / MANIFEST):
        return "it ends a finished run of this cell (a forced rerun trains from step 0)"
    return None


def _finished(work: Path) -> str | None:
    try:
        return json.loads((work / FINISHED).read_text())["manifest_xxh3"]
    except (OSError, ValueError, KeyError):
        return None


def mark_finished(work: Path) -> None:
    """Record the newest checkpoint as the end of a finished run (the policy and metrics are
    written): a later job with the same ``train.steps`` is a rerun on purpose and trains
    afresh, while a job killed before this call resumes. No checkpoint, no mark."""
    if found := checkpoints(work):
        (work / FINISHED).write_text(json.dumps(dict(checkpoint=found[0].name,
                                                     manifest_xxh3=_digest(found[0] / MANIFEST))))


def resumable(work: Path, cell: dict) -> Path | None:
    """The newest checkpoint that can be resumed, logging every newer one rejected and why."""
    for ckpt in checkpoints(work):
        why = rejection(ckpt, cell)
        if why is None:
            return ckpt
        log.warning("not resuming from %s: %s", ckpt, why)
    return None


def load_state(ckpt: Path, model, optimizer) -> None:
    """Restore the weights and optimizer state of a verified checkpoint into ``model`` (built
    from the cell's ``model_id``, sharded or not) and ``optimizer``; collective. Each rank
    reads the pieces of its own shards, whatever number of ranks wrote them (DCP reshards)."""
    from torch.distributed.checkpoint import load as dcp_load
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = training_state(model, optimizer)
    _dcp(dcp_load, state, ckpt)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def load_progress(ckpt: Path) -> tuple[int, int]:
    """Restore the RNG states of a verified checkpoint; returns its (step, cursor). Called last
    before the first step, so the resumed run draws as the uninterrupted one would.
    ``trainer_state.pt`` is a pickle written by ``save`` and checked against the manifest."""
    state = torch.load(ckpt / TRAINER_STATE, weights_only=False)
    set_rng_state(state["rng"])
    return state["step"], state["cursor"]


def save_policy(model, tokenizer, folder: str | Path, dtype: str, full: dict | None = None) -> None:
    """Save the final policy in the compute dtype (bf16 on a GPU: half the bytes of fp32 weights,
    and the dtype evaluation computes in, ``nsr_study.evaluate`` loads it so), then read the
    files back and compare every tensor with the model's: a policy that does not verify raises,
    so no checkpoint is deleted on its strength (``remove_checkpoints``). A sharded policy is
    saved from ``full``, its weights gathered to rank 0 (``distributed.full_state_dict``, the one
    full gather of a run, paid once per cell, where users and evaluation need plain HF weights;
    converted in place, so host memory holds one copy):
    rank 0 alone calls this, after the job left its process group, so no rank waits in a
    collective while rank 0 writes and re-reads the weights."""
    from safetensors.torch import load_file

    Path(folder).mkdir(parents=True, exist_ok=True)
    if full is not None:
        for k in list(full):  # in place, tensor by tensor: the fp32 copy is freed as it goes
            full[k] = full[k].to(getattr(torch, dtype))
        state = full
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
