"""Checkpoints are verified before they are trusted, and a failed write loses nothing."""

import errno
import logging
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study import checkpoint


def cell(**train):
    return {"model_id": "m", "objective": "NSR", "seed": 0, "train": {"steps": 4, "lr": 1e-3} | train}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=32, vocab_size=50))
    opt = torch.optim.AdamW(model.parameters())
    checkpoint.save(tmp_path, model, opt, 2, 16, cell())
    return tmp_path, model, opt


def test_a_good_checkpoint_is_resumed_and_restores_its_state(saved):
    work, model, opt = saved
    assert checkpoint.resumable(work, cell()) == work / "checkpoint-2"
    assert checkpoint.load_state(work / "checkpoint-2", model, opt) == (2, 16)


def test_a_truncated_weights_file_is_rejected_with_its_reason(saved, caplog):
    work, _, _ = saved
    weights = work / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        assert checkpoint.resumable(work, cell()) is None
    assert f"not resuming from {work / 'checkpoint-2'}: model.safetensors has" in caplog.text


def test_a_flipped_byte_is_caught_by_the_hash(saved):
    work, _, _ = saved
    state = work / "checkpoint-2" / "trainer_state.pt"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    assert "does not match its hash" in checkpoint.rejection(work / "checkpoint-2", cell())


def test_config_and_steps_decide_resumption(saved):
    work, _, _ = saved
    ckpt = work / "checkpoint-2"
    assert "changed: train.lr" in checkpoint.rejection(ckpt, cell(lr=1e-4))
    assert checkpoint.rejection(ckpt, cell(steps=10)) is None  # more steps continue
    assert "past train.steps = 1" in checkpoint.rejection(ckpt, cell(steps=1))
    assert checkpoint.rejection(ckpt, cell(micro_batch_size=1, threads=8, generation_batch_size=3)) is None  # runtime-only
    assert "changed: train.hf_compiled" in checkpoint.rejection(ckpt, cell(hf_compiled=True))  # samples differ


def test_a_failed_write_keeps_the_previous_checkpoint(saved, monkeypatch):
    work, model, opt = saved

    def disk_full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save_pretrained", disk_full)
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
        with pytest.raises(RuntimeError, match="failed .* no earlier checkpoint exists"):
            checkpoint.save(mnt, model, torch.optim.AdamW(model.parameters()), 1, 8, cell())
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
