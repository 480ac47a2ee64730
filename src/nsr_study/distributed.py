"""One cell on several ranks: processes started by PyTorch's elastic launcher, the policy (and
reference) sharded with FSDP2, NCCL for CUDA tensors and gloo for host ones (``backend``).

- Launch: a job asked for ``ranks > 1`` re-runs its own module under ``torch.distributed.run``
  (``relaunch``), after claiming its GPUs (``nsr_study.devices``) in the launching process, so
  the claim is held for the whole job and every rank inherits ``CUDA_VISIBLE_DEVICES``. The
  elastic agent ends every rank when one of them dies (no restarts), so a failure never hangs
  the job in a collective; a rank dies with its launcher (``die_with_launcher``).
- Sharding: ``fully_shard`` on each decoder layer, then on the root; the one-process precision
  (``mixed_precision``: fp32 master weights and residual stream, bf16 matmuls by autocast, fp32
  gradient reduction). Gradients are *summed* over ranks (divide factor 1): each rank's loss is
  already its share of the whole minibatch's loss (``nsr_study.update``), so the sum is the
  single-process gradient. Rank 0 alone reads a model from disk (``load_sharded``).
- Data: every rank holds the whole step (rollouts are gathered), so advantages, drops and
  minibatch orders are computed identically everywhere; a rank works on ``share`` of a list.
"""

from __future__ import annotations

import logging
import os
import sys

import torch
import torch.distributed as dist

log = logging.getLogger("nsr_study.distributed")
CLAIMED_ENV = "NSR_CLAIMED_GPUS"  # the launching process's claim, for the ranks' records
LAUNCHER_ENV = "NSR_LAUNCHER_PID"  # the launching process, whose death ends its ranks
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def launched() -> bool:
    """Whether this process is one rank of an elastic launch (torchrun sets these variables)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(command: str, argv: list[str], ranks: int) -> None:
    """Run ``python -m nsr_study command argv`` as ``ranks`` processes on this node under the elastic
    launcher (torchrun's Python API, as ``torchrun --standalone``: a free rendezvous port, so
    jobs sharing a node never collide) and exit with its status. No restarts: a rank that
    fails ends the others."""
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=ranks, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    log.info("launching %d ranks of nsr_study %s (torch.distributed.launcher)", ranks, command)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "nsr_study", command, *argv)
    except ChildFailedError as e:
        log.error("a rank failed, every rank was stopped: %s", e.format_msg().strip())
        sys.exit(1)
    sys.exit(0)


def die_with_launcher() -> None:
    """Have Linux SIGKILL this rank when its launching process dies (``prctl(PR_SET_PDEATHSIG)``).
    The elastic launcher starts each rank in its own session, so a launcher killed by SLURM's
    time limit or the OOM killer would otherwise leave its ranks running on GPUs whose claim
    (``nsr_study.devices``, held by the launcher) died with it, and writing ``work/``. A launcher
    that died before this call is caught by the parent check. Linux only (a no-op elsewhere)."""
    import ctypes
    import signal

    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if LAUNCHER_ENV in os.environ and os.getppid() != int(os.environ[LAUNCHER_ENV]):
        log.error("the launching process %s is gone: this rank stops", os.environ[LAUNCHER_ENV])
        sys.exit(1)


def world() -> tuple[int, int]:
    """(rank, number of ranks); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend(device: str) -> str:
    """The process group's backend for ranks computing on ``device``: the one place that
    decides which backend carries which tensors. NCCL carries CUDA tensors only (torch's
    ``Backend.backend_capability``), and a job's collectives hold both kinds: FSDP2's gathers
    and reductions, ``full_tensor`` and the barrier on the rank's GPU, while the objects of
    ``gather``/``broadcast`` (rollouts, checkpoint paths, DCP's plans) and the scalars of
    ``all_sum``/``all_max`` live in host memory. So a GPU job's group routes each device type
    to its backend (``cpu:gloo,cuda:nccl``, as vLLM's external launcher also requires): host
    tensors never make a round trip through the GPU, and no collective meets a backend that
    cannot carry its tensor. The CPU (gloo) carries both kinds on a CPU job."""
    return "cpu:gloo,cuda:nccl" if device == "cuda" else "gloo"


def init(device: str, timeout_min: float) -> str:
    """Join the launch's process group (``backend``); on a GPU, bind this rank to its local
    device. A collective waits at most ``timeout_min`` minutes (``train.collective_timeout_min``)
    before NCCL's watchdog, or gloo, aborts the job: torch's 10-minute default is shorter than
    the work one rank may do while the others wait (loading the model's weights from disk before
    they are broadcast, a checkpoint's file I/O on a network file system). Returns the device
    string the rank computes on."""
    from datetime import timedelta

    timeout = timedelta(minutes=timeout_min)
    if device == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        dist.init_process_group(backend(device), device_id=torch.device("cuda", local), timeout=timeout)
        return f"cuda:{local}"
    dist.init_process_group(backend(device), timeout=timeout)
    return "cpu"


def finish() -> None:
    """Leave the process group (a no-op outside one, or once a vLLM engine's shutdown has
    destroyed it: ``VLLMBackend.close``)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def begin(command: str, argv: list[str], ranks: int, gpus: int, label: str) -> str:
    """The start of a job's ``main``: claim ``gpus`` devices (``nsr_study.devices``) and, for
    ``ranks > 1``, run the job as ``ranks`` processes (this call then exits with their status).
    In a rank, return the device ids the launching process claimed; else this process's."""
    from nsr_study.devices import pin

    if launched():
        die_with_launcher()
        return os.environ.get(CLAIMED_ENV, "")
    claim = pin(gpus, label)  # before CUDA starts; held by this process while the ranks run
    if claim.ids and len(claim.ids) != ranks:
        raise ValueError(f"{label}: {ranks} ranks need {ranks} GPUs, the job holds {len(claim.ids)} "
                         f"({','.join(claim.ids)}): --gpus and --ranks must agree")
    if ranks > 1:
        os.environ[CLAIMED_ENV] = ",".join(claim.ids)
        os.environ[LAUNCHER_ENV] = str(os.getpid())
        relaunch(command, argv, ranks)
    return ",".join(claim.ids)


def share(items: list, rank: int, ranks: int) -> list:
    """Rank ``rank``'s contiguous block of ``items``, blocks differing by at most one item and
    in rank order (so concatenating the ranks' blocks restores ``items``)."""
    base, extra = divmod(len(items), ranks)
    start = rank * base + min(rank, extra)
    return items[start : start + base + (rank < extra)]


def gather(items: list) -> list:
    """Every rank's list, concatenated in rank order, on every rank (the identity on one rank)."""
    rank, ranks = world()
    if ranks == 1:
        return items
    out = [None] * ranks
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def broadcast(value):
    """Rank 0's ``value`` on every rank."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over ranks, reduced in host memory (gloo: ``backend``)."""
    if world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device="cpu")
    dist.all_reduce(t)
    return t.tolist()


def all_max(value: float) -> float:
    """The largest ``value`` over ranks, reduced in host memory (gloo: ``backend``)."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device="cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def mixed_precision():
    """FSDP2's precision policy, the one-process policy on any number of ranks: each layer's
    parameters are gathered in the dtype they are stored in (the policy's fp32 master weights,
    a bf16 reference or evaluated policy as it was saved), the forward's matmuls run in the
    compute dtype under ``batch.autocast`` exactly as on one rank, so embeddings, norms and the
    residual stream keep the stored dtype, and gradients are reduced in fp32. Gathering bf16
    copies instead (``param_dtype=bfloat16``) would halve the gathers' bytes but run the residual
    stream in bf16 on N ranks only: the largest model alone would change numerics, and a resume
    with another ``gpus`` would switch precision mid-run (docs/training.md)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=None, reduce_dtype=torch.float32)


def shard(model, device: str):
    """FSDP2 on ``model`` in place: each decoder layer, then the root (embeddings, final norm,
    head), with ``mixed_precision``. Gradients are summed over ranks, not averaged."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    # the mesh says where the shards live (FSDP2 moves them there): the rank's GPU, or the CPU
    # for gloo ranks even on a machine with GPUs (train.device cpu)
    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (world()[1],))
    mp = mixed_precision()
    for layer in model.base_model.layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    for module in model.modules():  # each FSDP module's own setting (the root's is not inherited)
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no PREMUL_SUM
    return model


def load_sharded(path: str, device: str, dtype: torch.dtype = torch.float32):
    """The causal LM of ``path`` sharded over the job's ranks (``shard``), its weights read from
    disk once per job, by rank 0: the other ranks build it on the meta device (no memory), all
    shard it, the others give their shards storage on the compute device (``to_empty``), and
    rank 0's full weights are broadcast into every rank's shards (``set_model_state_dict`` with
    ``broadcast_from_rank0``), then its buffers (rotary frequencies, not in the state dict). So
    host memory holds the full model once, not once per rank (a 7B: 30 GB of fp32 weights on
    each of 4 ranks before). Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM

    from nsr_study.loading import load_causal_lm

    if world()[0] == 0:
        model = load_causal_lm(path, "cpu", dtype)
        full = model.state_dict()  # the full tensors, kept while fully_shard keeps only this rank's shards
    else:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
        full = {}
    shard(model, device)
    if world()[0] != 0:
        model.to_empty(device=torch.device("cuda", torch.cuda.current_device()) if device == "cuda" else device)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    del full
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
    return model


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model) -> dict:
    """The full (unsharded) weights on CPU, on rank 0 only (empty elsewhere); collective. Only
    the final policy needs them (written once per cell); checkpoints stay sharded."""
    model.reshard()  # FSDP2's root stays gathered after a forward without backward
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

