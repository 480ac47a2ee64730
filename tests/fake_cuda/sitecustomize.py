"""A CPU job whose ranks meet the collectives of a GPU job (tests/test_distributed.py). Python
imports this module at the start of every process that has this folder on ``PYTHONPATH`` and
``NSR_FAKE_CUDA`` set to a folder; then:

- ``nsr_study.distributed.init`` joins the process group a ``cuda`` cell asks for (its backend,
  device and timeout recorded), made of gloo underneath, and the rank goes on computing on the CPU;
- every ``torch.distributed`` collective (and functional collective) refuses, as NCCL does, a
  tensor whose device type the requested backend does not carry (``Backend.backend_capability``,
  or the ``device:backend`` pairs). The device is the one the tensor would have on a GPU node:
  tensors the package itself hands to a collective are checked where they are (nothing a
  ``cuda`` cell would move); the objects of torch's object collectives sit where torch puts them
  for the requested group (``_get_object_coll_device``'s rule); everything else (FSDP2's
  gathers and reductions, DTensor, state-dict broadcasts) acts on the model's tensors, which on
  a GPU node are on the rank's GPU;
- at exit each process writes ``rank<RANK>.json`` into the folder: the requested group (with
  its timeout, whether the final policy was written while it existed, how many times it read a
  model's weights from disk) and each collective
  it made, counted by (name, device type, the chain of package functions that led to it).
"""

import os

if os.environ.get("NSR_FAKE_CUDA"):
    import atexit
    import functools
    import json
    import sys
    from collections import Counter
    from pathlib import Path

    import torch
    import torch.distributed as dist
    import torch.distributed._functional_collectives as funcol
    from torch.distributed import distributed_c10d as c10d

    import nsr_study.checkpoint as nsr_checkpoint
    import nsr_study.distributed as nsr_dist
    import nsr_study.loading as nsr_loading

    requested, seen = {}, Counter()

    def carried(backend: str) -> set[str]:
        if ":" in backend:
            return {pair.split(":")[0] for pair in backend.split(",")}
        return set(dist.Backend.backend_capability[backend])

    def object_device(backend: str) -> str:
        """``_get_object_coll_device``'s rule: one backend → its device; pairs → cpu if listed."""
        if ":" in backend:
            pairs = [pair.split(":")[0] for pair in backend.split(",")]
            return "cpu" if "cpu" in pairs else pairs[0]
        return "cuda" if backend == "nccl" else "cpu"

    def chain() -> tuple[str, str, bool]:
        """(package functions from the outermost, the direct caller's module, inside an object collective)."""
        frames, f = [], sys._getframe(2)
        while f:
            frames.append(f)
            f = f.f_back
        direct = frames[0].f_globals.get("__name__", "")
        objects = any(fr.f_code.co_name.endswith(("_object", "_object_list")) for fr in frames)
        package = [f"{fr.f_globals['__name__'].removeprefix('nsr_study.')}.{fr.f_code.co_name}" for fr in reversed(frames)
                   if fr.f_globals.get("__name__", "").startswith("nsr_study")]
        return " > ".join(package), direct, objects

    def tensors(x):
        if isinstance(x, torch.Tensor):
            yield x
        elif isinstance(x, (list, tuple)):
            for y in x:
                yield from tensors(y)

    def guarded(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if requested:
                path, direct, objects = chain()
                found = [t for a in (*args, *kwargs.values()) for t in tensors(a)]
                if direct.startswith("nsr_study"):
                    devices = {t.device.type for t in found}
                elif objects:
                    devices = {object_device(requested["backend"])}
                else:
                    devices = {requested["device"]} if found else set()
                for device in sorted(devices):
                    seen[(name, device, path)] += 1
                    if device not in carried(requested["backend"]):
                        raise RuntimeError(f"No backend type associated with device type {device} ({name} from "
                                           f"{path or direct} on a {requested['backend']} group)")
            return fn(*args, **kwargs)
        return wrapper

    for module in (dist, c10d):
        for name in ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "all_gather_single",
                     "reduce_scatter", "reduce_scatter_tensor", "reduce_scatter_single", "gather", "scatter",
                     "reduce", "all_to_all", "all_to_all_single", "send", "recv", "isend", "irecv"):
            setattr(module, name, guarded(name, getattr(c10d, name)))
    for name in ("all_reduce", "all_gather_tensor", "all_gather_single", "reduce_scatter_tensor",
                 "reduce_scatter_single", "all_to_all_single", "broadcast", "all_reduce_coalesced",
                 "all_gather_into_tensor_coalesced", "reduce_scatter_tensor_coalesced"):
        setattr(funcol, name, guarded(f"funcol.{name}", getattr(funcol, name)))

    real_init_process_group, real_init = dist.init_process_group, nsr_dist.init

    def init_process_group(backend=None, *args, device_id=None, **kwargs):
        timeout = kwargs.get("timeout")
        requested.update(backend=backend, device=getattr(device_id, "type", "cpu"),
                         timeout_s=timeout.total_seconds() if timeout is not None else None)
        return real_init_process_group("gloo", *args, **kwargs)

    def init(device: str, *args, **kwargs) -> str:
        """The ``cuda`` cell's group; the rank computes on the CPU all the same."""
        real_init("cuda", *args, **kwargs)
        return "cpu"

    real_save_policy = nsr_checkpoint.save_policy

    def save_policy(*args, **kwargs):
        """Recorded: whether the policy is written while the process group exists (other ranks
        may then wait in one of its collectives)."""
        requested["policy_written_in_group"] = dist.is_initialized()
        return real_save_policy(*args, **kwargs)

    nsr_checkpoint.save_policy = save_policy
    real_load = nsr_loading.load_causal_lm

    def load_causal_lm(*args, **kwargs):
        """Recorded: each full read of a model's weights from disk."""
        requested["loads"] = requested.get("loads", 0) + 1
        return real_load(*args, **kwargs)

    nsr_loading.load_causal_lm = load_causal_lm
    dist.init_process_group = c10d.init_process_group = init_process_group
    torch.cuda.set_device = lambda device: None
    nsr_dist.init = init

    @atexit.register
    def _write():
        if requested:
            out = Path(os.environ["NSR_FAKE_CUDA"]) / f"rank{os.environ.get('RANK', 0)}.json"
            out.write_text(json.dumps(dict(requested=requested, collectives=[
                dict(name=n, device=d, path=p, count=c) for (n, d, p), c in sorted(seen.items())])))
