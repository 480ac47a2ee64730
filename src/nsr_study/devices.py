"""Which GPUs a job runs on. Snakemake's local executor counts ``resources: gpu`` but never says
which device a job gets (snakemake/snakemake#281), so every job would open ``cuda:0``. Each GPU
job therefore claims its own device ids here, at the start of its ``main()``, and sets
``CUDA_VISIBLE_DEVICES`` to them before CUDA is initialised (CUDA reads the variable once, at
initialisation: nothing here imports torch, and nothing may call ``torch.cuda`` before).

- The devices: NVML (``nvidia-ml-py``, the driver's own library, no CUDA context) lists every
  GPU by UUID and, for a GPU in MIG mode, its MIG instances instead (CUDA cannot use a MIG
  GPU as a whole). Without a driver NVML lists none. Jobs run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
  so CUDA numbers devices in NVML's order; a job of several ranks is refused MIG instances (a
  process sees one MIG device).
- The pool: the entries of ``CUDA_VISIBLE_DEVICES`` when it is set (a user may give a run a
  subset of the node), read as CUDA reads them: an index, a (unique prefix of a) ``GPU-`` or
  ``MIG-`` UUID; the first entry that names no device ends the list ("-1" means none). Each
  entry is canonicalised to its device's UUID, so a device is locked under one name whatever
  alias a user wrote. Without NVML (no driver) the entries cannot be resolved and are kept as
  written, up to the first that is not an index or a UUID. Unset: every device NVML lists.
- A claim: one lock file per UUID in a node-wide folder, taken with ``flock``. The kernel drops a
  flock when its holder's process ends, however it ends (SIGKILL included), so a killed job never
  leaks its GPU and there are no stale locks to clean up. The holder writes its pid and label
  into the file, so a job that waits too long can name who holds the devices.
- A scheduler's pin: under SLURM a job's ``CUDA_VISIBLE_DEVICES`` is already its own, renumbered
  from 0 in every job, so node-wide locks on those ids would wrongly serialise unrelated jobs:
  a SLURM job whose variable lists exactly the ids it asks for uses them unchanged.
- A job that claims no device runs with ``CUDA_VISIBLE_DEVICES=""``, so that torch sees no GPU
  at all (an unset variable would show it every GPU of the node).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("nsr_study.devices")

LOCK_DIR_ENV = "NSR_GPU_LOCK_DIR"
TIMEOUT_ENV = "NSR_GPU_LOCK_TIMEOUT_S"
# Snakemake starts a GPU job only when its count of free GPUs allows, so a wait here means a
# process outside this run holds the device (another run on the node, or a job left running by a
# killed Snakemake): fail with its name rather than wait for it, perhaps for hours.
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.2
NODE_LOCK_DIR = Path("/tmp/nsr_study-gpu-locks")  # literal /tmp: $TMPDIR may differ per user or job


class DeviceError(RuntimeError):
    """No device set can be claimed: too many asked for, or all held for too long."""


@dataclass
class Claim:
    """The device ids a job runs on and how it got them (``how``: claimed, inherited, none);
    ``fds`` are the open lock files, held until the process ends."""

    ids: list[str]
    how: str
    waited_s: float = 0.0
    fds: list[int] = field(default_factory=list)


def visible_ids(value: str) -> list[str]:
    """The entries of a ``CUDA_VISIBLE_DEVICES`` value ('0,1' → ['0', '1']; '' → none)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def nvml_devices() -> list[tuple[str, str]]:
    """(UUID, name) of every device CUDA can run on, in NVML's (PCI bus) order: each GPU, or the
    MIG instances of a GPU in MIG mode, whose name is '<gpu index>:<instance>'. None when NVML
    cannot start (no driver). Asked of NVML, not torch: torch would initialise CUDA here."""
    try:
        import pynvml as nv

        nv.nvmlInit()
    except Exception:  # ImportError, or NVMLError: no driver / library
        return []
    try:
        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            gpu = nv.nvmlDeviceGetHandleByIndex(i)
            try:
                mig = nv.nvmlDeviceGetMigMode(gpu)[0] == nv.NVML_DEVICE_MIG_ENABLE
            except nv.NVMLError:  # a GPU without MIG support
                mig = False
            if not mig:
                out.append((nv.nvmlDeviceGetUUID(gpu), str(i)))
                continue
            for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(gpu)):
                try:
                    out.append((nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetMigDeviceHandleByIndex(gpu, j)), f"{i}:{j}"))
                except nv.NVMLError:  # no instance in this slot
                    pass
        return out
    finally:
        nv.nvmlShutdown()


def resolve(entry: str, devices: list[tuple[str, str]]) -> str | None:
    """The UUID that one ``CUDA_VISIBLE_DEVICES`` entry names, as CUDA reads it: an index into
    the devices, or a unique prefix of a ``GPU-``/``MIG-`` UUID; None when it names none. With
    no device list (no NVML) an index or UUID-like entry is kept as written."""
    is_index = re.fullmatch(r"\d+", entry) is not None
    if not devices:
        return entry if is_index or entry.startswith(("GPU-", "MIG-")) else None
    if is_index:
        return devices[int(entry)][0] if int(entry) < len(devices) else None
    matches = [uuid for uuid, _ in devices if entry.startswith(("GPU-", "MIG-")) and uuid.startswith(entry)]
    return matches[0] if len(matches) == 1 else None


def pool(env, devices: list[tuple[str, str]] | None = None) -> list[str]:
    """The devices this job may claim, as canonical names (UUIDs): ``CUDA_VISIBLE_DEVICES``'s
    entries up to the first that names no device, when it is set; else every device NVML lists."""
    devices = nvml_devices() if devices is None else devices
    if "CUDA_VISIBLE_DEVICES" not in env:
        return [uuid for uuid, _ in devices]
    out = []
    for entry in visible_ids(env["CUDA_VISIBLE_DEVICES"]):
        uuid = resolve(entry, devices)
        if uuid is None:
            break  # CUDA ignores this entry and every one after it
        if uuid not in out:
            out.append(uuid)
    return out


def inherited(env, count: int) -> list[str] | None:
    """The ids a SLURM job was given, when they are exactly as many as it asks for; else None."""
    ids = visible_ids(env.get("CUDA_VISIBLE_DEVICES", ""))
    return ids if "SLURM_JOB_ID" in env and len(ids) == count else None


def lock_dir(env) -> Path:
    """``$NSR_GPU_LOCK_DIR``, else one folder per node, or per SLURM allocation inside one (a
    Snakemake run inside ``salloc`` sees the allocation's renumbered ids, which other
    allocations on the node share)."""
    if LOCK_DIR_ENV in env:
        return Path(env[LOCK_DIR_ENV])
    return NODE_LOCK_DIR / f"slurm-{env['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in env else NODE_LOCK_DIR


def lock_path(folder: Path, device: str) -> Path:
    """One file per id; ids may be UUIDs or MIG names (with '/'), so unsafe characters become '_'."""
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', device)}.lock"


def open_lock(path: Path) -> int:
    """The lock file, open for writing; created (writable by every user, so the node-wide folder
    works for all users of a shared machine) only when missing. An existing file is opened
    without ``O_CREAT``: with ``fs.protected_regular`` (most distributions' default), O_CREAT on
    another user's file in a sticky folder fails even when its mode allows writing."""
    while True:
        try:
            return os.open(path, os.O_RDWR)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # another job created it in between: open it as it is
            continue
        os.fchmod(fd, 0o666)  # the umask may have taken write bits away
        return fd


def try_lock(path: Path, label: str) -> int | None:
    """The open, exclusively locked file with this process's pid and ``label`` written in it, or
    None when another process holds it."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {label}\n".encode(), 0)
    return fd


def holder(path: Path) -> str:
    """'pid <pid> (<label>)' of the process that wrote the lock file."""
    pid, _, label = path.read_text().strip().partition(" ")
    return f"pid {pid} ({label})" if pid else "a process that has not written its name yet"


def busy_message(label: str, count: int, ids: list[str], holders: dict[str, str], folder: Path,
                 waited_s: float) -> str:
    """The one line a job that got no devices fails with."""
    held = ", ".join(f"GPU {i} by {h}" for i, h in holders.items())
    return (f"{label}: no {count} of GPUs {','.join(ids)} free after {waited_s:.1f} s (locks in {folder}): held: "
            f"{held}. Stop those processes or run with a smaller --resources gpu (the wait is "
            f"${TIMEOUT_ENV}, default {DEFAULT_TIMEOUT_S:.0f} s)")


def claim(count: int, label: str, env, timeout_s: float, poll_s: float = POLL_S) -> Claim:
    """``count`` devices for the job ``label``: none when it asks for none or no GPU is visible
    (it runs on the CPU); a SLURM job's own ids; else ``count`` devices of the pool (UUIDs),
    locked all at once or not at all (holding some while waiting for more could deadlock two
    jobs), waiting up to ``timeout_s``."""
    if count == 0:
        return Claim([], "none")
    pinned = inherited(env, count)
    if pinned is not None:
        return Claim(pinned, "inherited")
    ids = pool(env)
    if not ids:
        return Claim([], "none")
    if count > len(ids):
        raise DeviceError(f"{label}: asks for {count} GPUs, but only {len(ids)} are visible ({','.join(ids)})")
    folder = lock_dir(env)
    try:
        folder.mkdir(parents=True)
        folder.chmod(0o1777)  # like /tmp: every user may add lock files, and remove only their own
    except FileExistsError:
        pass
    start = time.monotonic()
    while True:
        got, fds, busy = [], [], []
        for device in ids:
            fd = try_lock(lock_path(folder, device), label)
            if fd is None:
                busy.append(device)
                continue
            got.append(device)
            fds.append(fd)
            if len(got) == count:
                return Claim(got, "claimed", time.monotonic() - start, fds)
        waited = time.monotonic() - start
        for fd in fds:
            os.close(fd)
        if waited >= timeout_s:
            raise DeviceError(busy_message(label, count, ids, {d: holder(lock_path(folder, d)) for d in busy}, folder,
                                           waited))
        time.sleep(poll_s)


def now() -> str:
    """UTC with microseconds: the claim and exit lines of two jobs must be comparable."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def pin(count: int, label: str) -> Claim:
    """Claim ``count`` devices for this process and make them the only ones CUDA sees
    (``CUDA_VISIBLE_DEVICES``), logging the claim with its time and, at exit, the time the
    process lets them go. Call before anything initialises CUDA. A job that gets no devices
    stops here, with the one line saying why in its log."""
    env = os.environ
    # CUDA numbers devices fastest first unless told otherwise; NVML, and so the indexes read
    # here, in PCI bus order: on a node of mixed GPUs an index would name another device
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    from_driver = "CUDA_VISIBLE_DEVICES" not in env
    given = env.get("CUDA_VISIBLE_DEVICES")
    try:
        got = claim(count, label, env, float(env.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    except DeviceError as e:
        log.error("%s", e)
        sys.exit(1)
    if len(got.ids) > 1 and any(i.startswith("MIG-") for i in got.ids):
        log.error("%s: its %d ranks got MIG instances (%s), but CUDA shows a process one MIG device, so rank 1 "
                  "would find none: give the model gpus: 1 or run it on whole GPUs", label, count, ",".join(got.ids))
        sys.exit(1)
    if got.how == "none":
        why = "NVML lists none" if from_driver else f"CUDA_VISIBLE_DEVICES={given!r} names none"
        log.info("%s: %s", label, "asks for no GPU" if count == 0 else
                 f"asks for {count} GPU{'s' * (count > 1)}, but none is visible ({why}): running on the CPU")
        env["CUDA_VISIBLE_DEVICES"] = ""  # unset, torch would see every GPU of the node
        return got
    if got.how == "inherited":
        log.info("%s: GPU %s from SLURM job %s (CUDA_VISIBLE_DEVICES), used unchanged", label, ",".join(got.ids),
                 env["SLURM_JOB_ID"])
        return got
    env["CUDA_VISIBLE_DEVICES"] = ",".join(got.ids)  # UUIDs: the same devices in any CUDA_DEVICE_ORDER
    ids, pid = ",".join(got.ids), os.getpid()
    log.info("GPU %s claimed by pid %d (%s) at %s after waiting %.1f s; CUDA_VISIBLE_DEVICES=%s until the process "
             "exits (locks in %s)", ids, pid, label, now(), got.waited_s, ids, lock_dir(env))
    atexit.register(lambda: log.info("GPU %s held by pid %d until its exit at %s", ids, pid, now()))
    return got


def compute_device(setting: str, label: str) -> str:
    """'cuda' or 'cpu' for the job ``label`` and its ``train.device`` setting, after ``pin``:
    'auto' takes a GPU when torch sees one; 'cuda' without one stops the job at once (holding a
    GPU lock, it would otherwise train on the CPU for days), with one logged line saying why."""
    import torch

    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        why = (f"torch {torch.__version__} is built without CUDA" if torch.version.cuda is None
               else f"no GPU is visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        log.error("%s: train.device is 'cuda', but %s; set train.device to 'auto' or 'cpu'", label, why)
        sys.exit(1)
    return "cuda"


def suggested_command(argv: list[str], gpus: int) -> str:
    """The Snakemake command line ``argv`` with room for ``gpus`` GPUs at a time: its
    ``gpu=K`` resource raised to ``gpu=<gpus>`` (added when the limit came from a profile), and
    ``--cores all`` added when it gave no cores."""
    args = [re.sub(r"^gpu=\d+$", f"gpu={gpus}", a) for a in argv[1:]]
    if f"gpu={gpus}" not in args:
        args = ["--resources", f"gpu={gpus}", *args]
    if not any(a in ("--cores", "-c", "--jobs", "-j") or a.startswith(("--cores=", "-c", "--jobs=")) for a in args):
        args = ["--cores", "all", *args]
    return " ".join(["snakemake", *map(shlex.quote, args)])


def gpu_shortfall(needs: dict[str, int], limit: int | None, node: int | None, argv: list[str]) -> str | None:
    """Why a run cannot start every model's GPU jobs (None: it can), before any job: Snakemake
    lowers a job's ``gpu`` to the run's ``--resources gpu`` limit, so a model of ``gpus: 4``
    would start as 4 ranks on 1 claimed GPU and fail at its start. ``needs``: GPUs per job by
    model; ``limit``: the run's gpu limit (None: unlimited, as on SLURM); ``node``: the devices
    this node shows a local run (None: not a local run, or none visible, when jobs run on the CPU)."""
    name, need = max(needs.items(), key=lambda kv: kv[1], default=(None, 0))
    if limit is not None and need > limit:
        return (f"model {name} has gpus: {need}, but this run allows {limit} GPU{'s' * (limit > 1)} at a time "
                f"(--resources gpu={limit}; profiles/default sets 1), so its jobs would start as {need} ranks on "
                f"{limit} GPU{'s' * (limit > 1)} and fail: run {suggested_command(argv, need)}")
    if node is not None and need > node:
        return (f"model {name} has gpus: {need}, but this node shows {node} GPU{'s' * (node > 1)} "
                f"(CUDA_VISIBLE_DEVICES or NVML): run it where {need} are visible, or give it gpus: {node} or fewer")
    return None
