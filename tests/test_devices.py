"""GPU pinning (nsr_study.devices) without a GPU: the allocator reads its pool from
CUDA_VISIBLE_DEVICES or NVML whatever the hardware, so tests give it made-up ids (and a fake
NVML, tests/fake_nvml/pynvml.py) and a private lock folder. Holders in other processes are real
processes."""

import importlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nsr_study import devices
from nsr_study.devices import DeviceError, claim, inherited, lock_dir, lock_path, nvml_devices, open_lock, pool, visible_ids

FAKE_NVML = Path(__file__).parent / "fake_nvml"
# A node of two GPUs, the second in MIG mode with two instances.
NODE = [{"uuid": "GPU-aaaa-0000"}, {"uuid": "GPU-bbbb-1111", "mig": ["MIG-cccc-2222", "MIG-dddd-3333"]}]

# A process that claims one GPU of its environment's pool, prints the id, and holds it until killed.
HOLD = ("import os, sys; from nsr_study.devices import claim; c = claim(1, sys.argv[1], os.environ, 5); "
        "print(','.join(c.ids), flush=True); sys.stdin.read()")


@pytest.fixture
def env(tmp_path):
    """A pool of GPUs 0 and 1 with locks in a private folder."""
    return {"CUDA_VISIBLE_DEVICES": "0,1", "NSR_GPU_LOCK_DIR": str(tmp_path / "locks")}


@pytest.fixture
def holders(env):
    """Start holder processes (``start(label) -> (process, its GPU id)``); all killed at the end."""
    procs = []

    def start(label, **extra):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, label], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=os.environ | env | extra)
        procs.append(proc)
        return proc, proc.stdout.readline().strip()

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def release(c):
    for fd in c.fds:
        os.close(fd)


def test_visible_ids():
    assert visible_ids("0,1") == ["0", "1"]
    assert visible_ids(" 2, 3,,") == ["2", "3"]
    assert visible_ids("") == []
    assert visible_ids("GPU-8f2a,MIG-1") == ["GPU-8f2a", "MIG-1"]


@pytest.fixture
def nvml(monkeypatch):
    """The fake NVML as ``pynvml`` in this process; ``nvml(node)`` sets the node it reports."""
    monkeypatch.syspath_prepend(str(FAKE_NVML))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    importlib.import_module("pynvml")

    def node(gpus):
        monkeypatch.setenv("NSR_FAKE_NVML", json.dumps(gpus))
    return node


def test_nvml_lists_gpus_by_uuid_and_mig_instances_in_place_of_their_gpu(nvml):
    nvml(NODE)
    assert nvml_devices() == [("GPU-aaaa-0000", "0"), ("MIG-cccc-2222", "1:0"), ("MIG-dddd-3333", "1:1")]
    assert pool({}) == ["GPU-aaaa-0000", "MIG-cccc-2222", "MIG-dddd-3333"]
    nvml("fail")  # no driver
    assert nvml_devices() == [] and pool({}) == []


def test_cuda_visible_devices_is_read_as_cuda_reads_it(nvml):
    """Index, UUID and unique UUID prefix name one device, locked under its UUID once; the first
    entry that names no device (-1, an index past the end, an ambiguous or unknown prefix) ends
    the list, as in CUDA."""
    nvml(NODE)
    assert pool({"CUDA_VISIBLE_DEVICES": "0,GPU-aaaa,GPU-aaaa-0000"}) == ["GPU-aaaa-0000"]
    assert pool({"CUDA_VISIBLE_DEVICES": "2,MIG-c"}) == ["MIG-dddd-3333", "MIG-cccc-2222"]  # the user's order
    assert pool({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert pool({"CUDA_VISIBLE_DEVICES": "1,-1,0"}) == ["MIG-cccc-2222"]
    assert pool({"CUDA_VISIBLE_DEVICES": "0,3,1"}) == ["GPU-aaaa-0000"]
    assert pool({"CUDA_VISIBLE_DEVICES": "MIG-,0"}) == []  # ambiguous: two MIG UUIDs
    assert pool({"CUDA_VISIBLE_DEVICES": "GPU-ffff,0"}) == []
    assert pool({"CUDA_VISIBLE_DEVICES": ""}) == []  # set but empty: no GPU, not NVML's list
    nvml("fail")  # entries cannot be resolved: kept as written, up to the first that is not a device name
    assert pool({"CUDA_VISIBLE_DEVICES": "2,0"}) == ["2", "0"]
    assert pool({"CUDA_VISIBLE_DEVICES": "GPU-fake-0,-1,GPU-fake-1"}) == ["GPU-fake-0"]


def test_one_device_under_two_aliases_is_one_lock(nvml, env):
    nvml(NODE)
    first = claim(1, "a", env | {"CUDA_VISIBLE_DEVICES": "0"}, timeout_s=0)
    assert first.ids == ["GPU-aaaa-0000"]
    with pytest.raises(DeviceError, match="no 1 of GPUs GPU-aaaa-0000 free"):
        claim(1, "b", env | {"CUDA_VISIBLE_DEVICES": "GPU-aaaa"}, timeout_s=0)
    release(first)


def test_an_existing_lock_file_is_opened_without_o_creat(tmp_path, monkeypatch):
    """O_CREAT on another user's file in a sticky folder fails under fs.protected_regular, so an
    existing file is opened without it; a missing one is created writable by all."""
    calls = []
    real_open = os.open
    monkeypatch.setattr(devices.os, "open", lambda path, flags, *mode: calls.append(flags) or real_open(path, flags, *mode))
    path = tmp_path / "gpu-x.lock"
    os.close(open_lock(path))
    assert calls[-1] & os.O_CREAT and calls[-1] & os.O_EXCL and path.stat().st_mode & 0o777 == 0o666
    calls.clear()
    os.close(open_lock(path))
    assert calls == [os.O_RDWR]


def test_inherited_only_for_a_slurm_job_given_exactly_its_count():
    slurm = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0"}
    assert inherited(slurm, 1) == ["0"]
    assert inherited(slurm | {"CUDA_VISIBLE_DEVICES": "0,1"}, 2) == ["0", "1"]
    assert inherited(slurm | {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 1) is None  # an allocation to share: locks
    assert inherited({"CUDA_VISIBLE_DEVICES": "0"}, 1) is None  # a user's subset, not a scheduler's pin
    assert inherited({"SLURM_JOB_ID": "42"}, 1) is None


def test_lock_dir_and_file_names():
    assert lock_dir({"NSR_GPU_LOCK_DIR": "/x", "SLURM_JOB_ID": "7"}) == Path("/x")
    assert lock_dir({}) == Path("/tmp/nsr_study-gpu-locks")
    assert lock_dir({"SLURM_JOB_ID": "7"}) == Path("/tmp/nsr_study-gpu-locks/slurm-7")
    assert lock_path(Path("/l"), "3") == Path("/l/gpu-3.lock")
    assert lock_path(Path("/l"), "MIG-GPU-ab/1/0") == Path("/l/gpu-MIG-GPU-ab_1_0.lock")


def test_claims_take_distinct_ids_all_or_nothing(env, tmp_path):
    env["CUDA_VISIBLE_DEVICES"] = "0,1,2"
    first = claim(1, "a", env, timeout_s=0)
    assert (first.ids, first.how) == (["0"], "claimed")
    second = claim(2, "b", env, timeout_s=0)
    assert second.ids == ["1", "2"]
    assert lock_path(tmp_path / "locks", "1").read_text() == f"{os.getpid()} b\n"
    release(first)
    with pytest.raises(DeviceError):
        claim(2, "c", env, timeout_s=0)  # only GPU 0 is free
    third = claim(1, "d", env, timeout_s=0)  # and the failed claim did not keep it
    assert third.ids == ["0"]
    for c in (second, third):
        release(c)


def test_timeout_fails_with_one_line_naming_devices_and_holders(env, holders):
    (a, got_a), (b, got_b) = holders("train tiny-a/NSR/seed0"), holders("evaluate tiny-b/base")
    assert {got_a, got_b} == {"0", "1"}
    with pytest.raises(DeviceError) as err:
        claim(1, "train tiny-a/PSR/seed0", env, timeout_s=0.5, poll_s=0.1)
    message = str(err.value)
    assert "\n" not in message
    assert re.match(r"train tiny-a/PSR/seed0: no 1 of GPUs 0,1 free after 0\.[5-9] s", message), message
    pid = {got_a: a.pid, got_b: b.pid}
    assert f"GPU 0 by pid {pid['0']} (" in message and f"GPU 1 by pid {pid['1']} (" in message
    assert "(train tiny-a/NSR/seed0)" in message and "(evaluate tiny-b/base)" in message
    assert "--resources gpu" in message and "NSR_GPU_LOCK_TIMEOUT_S" in message


def test_sigkilled_holder_frees_its_id_for_the_next_job(env, holders):
    env["CUDA_VISIBLE_DEVICES"] = "0"
    proc, got = holders("train tiny-a/NSR/seed0")
    assert got == "0"
    with pytest.raises(DeviceError, match=f"GPU 0 by pid {proc.pid} "):
        claim(1, "next", env, timeout_s=0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = claim(1, "next", env, timeout_s=5)
    assert after.ids == ["0"]
    release(after)


def test_inherited_slurm_pin_is_used_unchanged_without_locks(env, tmp_path):
    slurm = env | {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "3"}
    c = claim(1, "train", slurm, timeout_s=0)
    assert (c.ids, c.how, c.fds) == (["3"], "inherited", [])
    assert not (tmp_path / "locks").exists()


def test_no_gpu_visible_runs_on_the_cpu_and_too_many_fail_at_once(env):
    assert claim(1, "train", env | {"CUDA_VISIBLE_DEVICES": ""}, timeout_s=0).ids == []
    assert claim(0, "train", env, timeout_s=0).how == "none"
    with pytest.raises(DeviceError, match="train: asks for 3 GPUs, but only 2 are visible \\(0,1\\)"):
        claim(3, "train", env, timeout_s=60)


PIN = ("import os, sys; from nsr_study.devices import compute_device, pin; from nsr_study.logs import setup_logging; "
       "setup_logging(); pin(int(sys.argv[1]), 'job'); print(repr(os.environ.get('CUDA_VISIBLE_DEVICES'))); "
       "sys.argv[2:] and print(compute_device(sys.argv[2], 'job'))")


def run_pin(count: int, env: dict, *device: str) -> subprocess.CompletedProcess:
    """``pin(count)`` in a fresh process (with the fake NVML of ``NSR_FAKE_NVML``, default: no
    driver), then, given a ``train.device`` setting, its compute device (imports torch: slow)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "SLURM_"))}
    base |= {"PYTHONPATH": os.pathsep.join([str(FAKE_NVML), os.environ.get("PYTHONPATH", "")]), "NSR_FAKE_NVML": '"fail"'}
    return subprocess.run([sys.executable, "-c", PIN, str(count), *device], capture_output=True, text=True,
                          env=base | env)


def test_pin_sets_the_process_environment_and_logs_claim_and_exit(env, holders, tmp_path):
    holders("other")  # holds GPU 0
    res = run_pin(1, env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["'1'"]  # no driver: the entries as written
    claimed = re.search(r"GPU 1 claimed by pid (\d+) \(job\) at (\S+) after waiting 0\.0 s", res.stderr)
    exited = re.search(r"GPU 1 held by pid (\d+) until its exit at (\S+)", res.stderr)
    assert claimed and exited and claimed[1] == exited[1] and claimed[2] < exited[2], res.stderr
    res = run_pin(1, {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"} | {"NSR_FAKE_NVML": json.dumps(NODE)})
    assert res.stdout.split()[0] == "'GPU-aaaa-0000'"  # NVML's devices, by UUID (any CUDA_DEVICE_ORDER)
    res = run_pin(1, env | {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0"})
    assert res.stdout.split()[0] == "'0'"  # inherited: GPU 0 although another process locks it here
    assert "GPU 0 from SLURM job 42 (CUDA_VISIBLE_DEVICES), used unchanged" in res.stderr


def test_pin_without_any_gpu_runs_on_the_cpu(env, tmp_path):
    """device: auto on a machine without GPUs: the job asks for one and is told there is none."""
    res = run_pin(1, env | {"CUDA_VISIBLE_DEVICES": "-1"})
    assert res.returncode == 0 and "job: asks for 1 GPU, but none is visible (CUDA_VISIBLE_DEVICES='-1' names " \
        "none): running on the CPU" in res.stderr, res.stderr
    res = run_pin(2, {"NSR_GPU_LOCK_DIR": env["NSR_GPU_LOCK_DIR"]})
    assert res.returncode == 0 and "asks for 2 GPUs, but none is visible (NVML lists none)" in res.stderr
    assert res.stdout.split() == ["''"]  # so torch sees no GPU, not every GPU of the node
    assert run_pin(0, {}).stdout.split() == ["''"]  # a job that asks for none


def test_cuda_setting_without_cuda_fails_at_once_with_one_line(env):
    res = run_pin(1, env, "cuda")
    assert res.returncode == 1 and res.stdout.split() == ["'0'"]
    error = [ln for ln in res.stderr.splitlines() if "ERROR" in ln]
    assert len(error) == 1 and "job: train.device is 'cuda', but " in error[0] and "set train.device to 'auto'" in error[0]


def test_pin_failure_exits_with_one_logged_line(env, holders):
    holders("a")
    holders("b")
    res = run_pin(1, env | {"NSR_GPU_LOCK_TIMEOUT_S": "0"})
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "ERROR job: no 1 of GPUs 0,1 free after 0.0 s" in lines[0], res.stderr


# ---------------------------------------------------------------- too few GPUs, refused before any job

def test_a_model_with_more_gpus_than_the_run_allows_is_named_with_the_command_to_use():
    from nsr_study.devices import gpu_shortfall, suggested_command

    needs = {"qwen2.5-3b": 1, "qwen2.5-7b": 4}
    argv = ["/venv/bin/snakemake", "--resources", "gpu=1", "--configfile", "config/config.yaml", "config/qwen7b.yaml"]
    assert gpu_shortfall(needs, 1, None, argv) == (
        "model qwen2.5-7b has gpus: 4, but this run allows 1 GPU at a time (--resources gpu=1; profiles/default sets "
        "1), so its jobs would start as 4 ranks on 1 GPU and fail: run snakemake --cores all --resources gpu=4 "
        "--configfile config/config.yaml config/qwen7b.yaml")
    assert gpu_shortfall(needs, 4, None, argv) is None and gpu_shortfall(needs, None, None, argv) is None  # SLURM: no limit
    assert gpu_shortfall(needs, 8, 2, argv) == ("model qwen2.5-7b has gpus: 4, but this node shows 2 GPUs "
                                                "(CUDA_VISIBLE_DEVICES or NVML): run it where 4 are visible, or give "
                                                "it gpus: 2 or fewer")
    assert suggested_command(["snakemake", "-n", "--cores", "8"], 4) == "snakemake --resources gpu=4 -n --cores 8"


def test_the_7b_overlay_with_the_default_gpu_limit_stops_before_any_job():
    """README's `--resources gpu=1` with config/qwen7b.yaml: at b14a05b the dry run planned every
    7B job as `--gpus 1 --ranks 4` (each would fail at its start); now the run stops at parse
    time naming the model, its gpus and the command, which then plans. On a node that shows 2
    GPUs (fake NVML) even `gpu=8` is refused. train.device cpu asks for no GPU: no refusal."""
    from conftest import snakemake

    overlay = ["--configfile", "config/config.yaml", "config/qwen7b.yaml"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "SLURM_"))}
    env |= {"PYTHONPATH": os.pathsep.join([str(FAKE_NVML), os.environ.get("PYTHONPATH", "")]), "NSR_FAKE_NVML": '"fail"'}
    res = snakemake("-n", "--cores", "all", "--resources", "gpu=1", *overlay, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "--gpus 1 --ranks 4" not in out
    assert ("model qwen2.5-7b has gpus: 4, but this run allows 1 GPU at a time" in out and "-n --cores all "
            "--resources gpu=4 --configfile config/config.yaml config/qwen7b.yaml" in out), out[-2000:]
    res = snakemake("-n", "--cores", "all", "--resources", "gpu=4", *overlay, env=env)
    assert res.returncode == 0 and "--gpus 4 --ranks 4" in res.stdout, res.stderr[-2000:]
    two = json.dumps([{"uuid": "GPU-aaaa-0000"}, {"uuid": "GPU-eeee-4444"}])
    res = snakemake("-n", "--cores", "all", "--resources", "gpu=8", *overlay, env=env | {"NSR_FAKE_NVML": two})
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "model qwen2.5-7b has gpus: 4, but this node shows 2 GPUs" in out, out[-2000:]
    res = snakemake("-n", "--cores", "all", "--resources", "gpu=1", *overlay, "--config", "train={'device': 'cpu'}", env=env)
    assert res.returncode == 0 and "has gpus: 4" not in res.stdout + res.stderr


PIN_ORDER = ("import os, sys; from nsr_study.devices import pin; from nsr_study.logs import setup_logging; "
             "setup_logging(); pin(int(sys.argv[1]), 'job'); print(os.environ['CUDA_DEVICE_ORDER'])")


def test_jobs_number_devices_in_pci_order_and_ranks_on_mig_instances_are_refused(env):
    """A job numbers CUDA devices as NVML does (PCI_BUS_ID; CUDA's default is fastest first, so
    an index could name another GPU on a mixed node). Two ranks on the two MIG instances of the
    fake node stop before any work with one line (b14a05b claimed them; rank 1's set_device(1)
    then failed, a process seeing one MIG device); one rank on a MIG instance runs."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "SLURM_"))}
    base |= {"PYTHONPATH": os.pathsep.join([str(FAKE_NVML), os.environ.get("PYTHONPATH", "")]),
             "NSR_FAKE_NVML": json.dumps(NODE), "NSR_GPU_LOCK_DIR": env["NSR_GPU_LOCK_DIR"]}
    run = lambda count, visible: subprocess.run([sys.executable, "-c", PIN_ORDER, str(count)], capture_output=True,  # noqa: E731
                                                text=True, env=base | {"CUDA_VISIBLE_DEVICES": visible})
    res = run(2, "1,2")
    errors = [ln for ln in res.stderr.splitlines() if "ERROR" in ln]
    assert res.returncode == 1 and len(errors) == 1, res.stderr
    assert "job: its 2 ranks got MIG instances (MIG-cccc-2222,MIG-dddd-3333), but CUDA shows a process one MIG " \
           "device" in errors[0]
    res = run(1, "1")
    assert res.returncode == 0 and res.stdout.split() == ["PCI_BUS_ID"], res.stderr
