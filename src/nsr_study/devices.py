"""Which GPUs a job runs on. Snakemake's local executor counts ``resources: gpu`` but never says
which device a job gets (snakemake/snakemake#281), so every job would open ``cuda:0``. Each GPU
job therefore claims its own device ids here, at the start of its ``main()``, and sets
``CUDA_VISIBLE_DEVICES`` to them before CUDA is initialised (CUDA reads the variable once, at
initialisation: nothing here imports torch, and nothing may call ``torch.cuda`` before).

- The pool: the ids in ``CUDA_VISIBLE_DEVICES`` when it is set (a user may give a run a subset
  of the node), else every GPU the driver lists (``nvidia-smi``).
- A claim: one lock file per id in a node-wide folder, taken with ``flock``. The kernel drops a
  flock when its holder's process ends, however it ends (SIGKILL included), so a killed job never
  leaks its GPU and there are no stale locks to clean up. The holder writes its pid and label
  into the file, so a job that waits too long can name who holds the devices.
- A scheduler's pin: under SLURM a job's ``CUDA_VISIBLE_DEVICES`` is already its own, renumbered
  from 0 in every job, so node-wide locks on those ids would wrongly serialise unrelated jobs:
  a SLURM job whose variable lists exactly the ids it asks for uses them unchanged.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import re
import shutil
import subprocess
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
    """The ids listed by a ``CUDA_VISIBLE_DEVICES`` value ('0,1' → ['0', '1']; '' → none)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def driver_ids() -> list[str]:
    """Indices of the GPUs ``nvidia-smi`` lists; none without nvidia-smi or when it fails (no
    driver loaded). Asked of nvidia-smi, not torch: torch would initialise CUDA in this process."""
    if shutil.which("nvidia-smi") is None:
        return []
    res = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True)
    return visible_ids(res.stdout.replace("\n", ",")) if res.returncode == 0 else []


def pool(env) -> list[str]:
    """The node's devices as this job sees them: ``CUDA_VISIBLE_DEVICES`` when set, else the driver's."""
    return visible_ids(env["CUDA_VISIBLE_DEVICES"]) if "CUDA_VISIBLE_DEVICES" in env else driver_ids()


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
    """The lock file, open for writing; made writable by every user when this user owns it, so
    the node-wide folder works for all users of a shared machine."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if os.fstat(fd).st_uid == os.getuid():
        os.fchmod(fd, 0o666)
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
    (it runs on the CPU); a SLURM job's own ids; else ``count`` ids of the pool, locked all at
    once or not at all (holding some while waiting for more could deadlock two jobs), waiting up
    to ``timeout_s``."""
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
    from_driver = "CUDA_VISIBLE_DEVICES" not in env
    try:
        got = claim(count, label, env, float(env.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
    except DeviceError as e:
        log.error("%s", e)
        sys.exit(1)
    if got.how == "none":
        why = "nvidia-smi lists none" if from_driver else "CUDA_VISIBLE_DEVICES is empty"
        log.info("%s: %s", label, "asks for no GPU" if count == 0 else
                 f"asks for {count} GPU{'s' * (count > 1)}, but none is visible ({why}): running on the CPU")
        return got
    if got.how == "inherited":
        log.info("%s: GPU %s from SLURM job %s (CUDA_VISIBLE_DEVICES), used unchanged", label, ",".join(got.ids),
                 env["SLURM_JOB_ID"])
        return got
    env["CUDA_VISIBLE_DEVICES"] = ",".join(got.ids)
    if from_driver:  # nvidia-smi numbers GPUs in PCI bus order; CUDA's default order may differ
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    ids, pid = ",".join(got.ids), os.getpid()
    log.info("GPU %s claimed by pid %d (%s) at %s after waiting %.1f s; CUDA_VISIBLE_DEVICES=%s until the process "
             "exits (locks in %s)", ids, pid, label, now(), got.waited_s, ids, lock_dir(env))
    atexit.register(lambda: log.info("GPU %s held by pid %d until its exit at %s", ids, pid, now()))
    return got
