"""FLOP counts and MFU, against values computed by hand."""

import pytest

from nsr_study.flops import forward_flops, mfu, peak_bf16_tflops, update_flops


def test_flops_by_hand():
    assert forward_flops(10**9, 1000) == 2e12
    assert update_flops(10**9, 1000, recompute=False) == 6e12
    assert update_flops(10**9, 1000, recompute=True) == 8e12
    # issue 11's example: 0.5B shape (494 M), 64 × 712 tokens, checkpointing, 2.2 s → 81.8 TFLOP/s
    achieved = update_flops(494_000_000, 64 * 712, recompute=True) / 2.2
    assert achieved == pytest.approx(81.85e12, rel=1e-3)
    assert mfu(8e12, 10.0, 989.4) == pytest.approx(0.8 / 989.4)


def test_peak_by_device_name():
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.5
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("cpu") is None
    with pytest.raises(ValueError, match="positive seconds"):
        mfu(1.0, 0.0, 989.4)
