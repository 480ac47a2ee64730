"""Checkpoints are verified before they are trusted, and a failed write loses nothing."""

import errno
import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study import checkpoint
from nsr_study.sources import source_hash


def cell(**train):
    return {"model_id": "m", "objective": "NSR", "seed": 0, "train": {"steps": 4, "lr": 1e-3} | train}


def tiny(seed):
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=1, intermediate_size=32, vocab_size=50))


@pytest.fixture
def saved(tmp_path):
    """checkpoint-2 of a tiny model after one AdamW step (so the moments are not zero)."""
    model = tiny(0)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.arange(8)[None], labels=torch.arange(8)[None]).loss.backward()
    opt.step()
    checkpoint.save(tmp_path, model, opt, 2, 16, cell())
    return tmp_path, model, opt


def test_a_good_checkpoint_is_resumed_and_restores_its_state(saved):
    """Another model and a fresh AdamW take the saved weights, moments and step exactly; the
    RNG states and (step, cursor) come back. The files are DCP's and ours, all in the manifest."""
    work, model, opt = saved
    ckpt = work / "checkpoint-2"
    assert checkpoint.resumable(work, cell()) == ckpt
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert set(manifest["files"]) == {".metadata", "__0_0.distcp", "trainer_state.pt"} and manifest["ranks"] == 1
    rng = torch.get_rng_state()
    torch.rand(3)
    other = tiny(1)
    fresh = torch.optim.AdamW(other.parameters())
    checkpoint.load_state(ckpt, other, fresh)
    assert checkpoint.load_progress(ckpt) == (2, 16) and torch.equal(torch.get_rng_state(), rng)
    want, got = model.state_dict(), other.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"] and len(a["state"]) == len(b["state"]) == len(want)
    for i, s in a["state"].items():
        assert s["exp_avg"].abs().max() > 0 and all(torch.equal(s[k], b["state"][i][k]) for k in s)


def test_no_checkpoint_before_the_first_optimizer_step(tmp_path):
    """Saving would run AdamW's zero-lr initialising step (step count 1, zero moments): a run
    whose first steps were all skipped would then take a smaller first real update than the
    same run never checkpointed. So nothing is written, and the optimizer stays untouched."""
    model = tiny(0)
    opt = torch.optim.AdamW(model.parameters())
    assert checkpoint.save(tmp_path, model, opt, 2, 16, cell()) is None
    assert list(tmp_path.iterdir()) == [] and not opt.state


def test_a_truncated_shard_is_rejected_with_its_reason(saved, caplog):
    work, _, _ = saved
    shard = work / "checkpoint-2" / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        assert checkpoint.resumable(work, cell()) is None
    assert f"not resuming from {work / 'checkpoint-2'}: __0_0.distcp has" in caplog.text


def test_a_flipped_byte_is_caught_by_the_hash(saved):
    work, _, _ = saved
    state = work / "checkpoint-2" / "trainer_state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    assert "does not match its hash" in checkpoint.rejection(work / "checkpoint-2", cell())


def test_config_steps_and_format_decide_resumption(saved):
    work, _, _ = saved
    ckpt = work / "checkpoint-2"
    assert "changed: train.lr" in checkpoint.rejection(ckpt, cell(lr=1e-4))
    assert checkpoint.rejection(ckpt, cell(steps=10)) is None  # more steps continue
    assert "past train.steps = 1" in checkpoint.rejection(ckpt, cell(steps=1))
    assert checkpoint.rejection(ckpt, cell(micro_batch_size=1, threads=8, generation_batch_size=3)) is None  # runtime-only
    assert "changed: train.hf_compiled" in checkpoint.rejection(ckpt, cell(hf_compiled=True))  # samples differ
    manifest = json.loads((ckpt / "manifest.json").read_text())
    del manifest["format"]  # as written before DCP: safetensors weights, full optimizer state
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    assert checkpoint.rejection(ckpt, cell()) == ("it is in an older format (HF safetensors + trainer_state.pt, "
                                                  "not torch.distributed.checkpoint)")


def disk_full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["torch.distributed.checkpoint.filesystem._write_item", "nsr_study.checkpoint._files"])
def test_a_failed_write_keeps_the_previous_checkpoint(saved, monkeypatch, where):
    """A shard that DCP cannot write (its error names the rank), or rank 0's manifest."""
    work, model, opt = saved
    monkeypatch.setattr(where, disk_full)
    with pytest.raises(RuntimeError, match="checkpoint-3 failed .*No space left.* previous checkpoint checkpoint-2 is intact"):
        checkpoint.save(work, model, opt, 3, 24, cell())
    assert [p.name for p in work.iterdir() if p.name.startswith((".", "checkpoint"))] == ["checkpoint-2"]
    assert checkpoint.resumable(work, cell()) == work / "checkpoint-2"


def test_a_full_tmpfs_fails_the_write_cleanly(tmp_path):
    """The same on a real file system that runs out of space (needs mount rights: root)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                             num_key_value_heads=1, intermediate_size=128, vocab_size=500))
        opt = torch.optim.AdamW(model.parameters())
        model(torch.arange(8)[None], labels=torch.arange(8)[None]).loss.backward()
        opt.step()
        with pytest.raises(RuntimeError, match="failed .* no earlier checkpoint exists"):
            checkpoint.save(mnt, model, opt, 1, 8, cell())
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


class _Tokenizer:
    def save_pretrained(self, folder):
        (Path(folder) / "tokenizer_config.json").write_text("{}")


def test_policy_is_saved_in_the_compute_dtype_and_verified_before_checkpoints_go(saved, tmp_path, monkeypatch):
    """bf16: every saved tensor is the trained fp32 weight rounded to bf16 (half the bytes); a
    policy that reads back otherwise raises; remove_checkpoints then deletes the checkpoint."""
    work, model, _ = saved
    expected = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    checkpoint.save_policy(model, _Tokenizer(), tmp_path / "policy", "bfloat16")
    from safetensors.torch import load_file

    files = load_file(tmp_path / "policy" / "model.safetensors")
    assert files and all(v.dtype == torch.bfloat16 and torch.equal(v, expected[k]) for k, v in files.items())
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "load_file", lambda f: {k: v + 1 for k, v in files.items()})
    with pytest.raises(RuntimeError, match="does not read back as the trained weights"):
        checkpoint.save_policy(model, _Tokenizer(), tmp_path / "other", "bfloat16")
    assert checkpoint.checkpoints(work)
    checkpoint.remove_checkpoints(work)
    assert checkpoint.checkpoints(work) == []


class FakeCudaRng:
    """torch.cuda's RNG calls on a node of ``devices`` GPUs, current device 0: each device's
    state a distinct tensor; ``*_all`` as torch.cuda.random implements them (one call per
    device index), and an index past the last device refused as CUDA refuses it."""

    def __init__(self, devices: int):
        self.states = {i: torch.tensor([i, 0], dtype=torch.uint8) for i in range(devices)}

    def _index(self, device) -> int:
        index = 0 if device in ("cuda", None) else (device if isinstance(device, int) else torch.device(device).index)
        if index not in self.states:
            raise RuntimeError("CUDA error: invalid device ordinal")
        return index

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self._index(device)].clone())
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [self.states[i].clone() for i in sorted(self.states)])
        monkeypatch.setattr(torch.cuda, "set_rng_state",
                            lambda state, device="cuda": self.states.__setitem__(self._index(device), state.clone()))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all",
                            lambda states: [torch.cuda.set_rng_state(s, i) for i, s in enumerate(states)])


def test_a_checkpoint_of_two_gpus_resumes_on_one(monkeypatch):
    """A 2-GPU job saves its rank's CUDA RNG state (device 0, drawn on since: [0, 7]); a job
    with one GPU restores it into its device (b14a05b saved both GPUs' states and failed
    restoring device 1's there)."""
    two = FakeCudaRng(2)
    two.install(monkeypatch)
    two.states[0] = torch.tensor([0, 7], dtype=torch.uint8)
    state = checkpoint.rng_state()
    one = FakeCudaRng(1)
    one.install(monkeypatch)
    checkpoint.set_rng_state(state)
    assert torch.equal(one.states[0], torch.tensor([0, 7], dtype=torch.uint8))
    older = state | {"cuda": [torch.tensor([0, 9], dtype=torch.uint8), torch.tensor([1, 9], dtype=torch.uint8)]}
    checkpoint.set_rng_state(older)  # a checkpoint of the former format: one state per GPU
    assert torch.equal(one.states[0], torch.tensor([0, 9], dtype=torch.uint8))


def test_a_checkpoint_from_other_training_code_is_rejected(saved, monkeypatch, caplog):
    """Issue 34: the fingerprint covered the config only, so after a fix to the trainer a
    resumed (or forced) run continued what the old code trained."""
    work, _, _ = saved
    manifest = json.loads((work / "checkpoint-2" / "manifest.json").read_text())
    assert manifest["code"] == checkpoint.training_code() == source_hash("nsr_study.train")
    monkeypatch.setattr(checkpoint, "training_code", lambda: "0123456789abcdef")
    with caplog.at_level(logging.WARNING):
        assert checkpoint.resumable(work, cell()) is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (f"not resuming from {work / 'checkpoint-2'}: it was trained by other training code (source hash "
                    f"{manifest['code']}, this code's 0123456789abcdef: nsr_study.train or a module it imports changed)")


def test_a_finished_run_is_not_resumed_at_its_own_end(saved):
    work, _, _ = saved
    ckpt = work / "checkpoint-2"
    assert checkpoint.rejection(ckpt, cell(steps=2)) is None  # killed after its last checkpoint: resume
    checkpoint.mark_finished(work)
    assert checkpoint.rejection(ckpt, cell(steps=2)) == ("it ends a finished run of this cell "
                                                          "(a forced rerun trains from step 0)")
    assert checkpoint.rejection(ckpt, cell(steps=4)) is None  # more steps continue the finished run
