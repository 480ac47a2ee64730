"""Model FLOPs and utilisation (MFU) of the policy update, for the benchmarks' figures.

Convention (Kaplan et al. 2020, and issue 11's): a dense transformer with N parameters spends
2·N FLOPs per token in a forward pass and 4·N in the backward; gradient checkpointing
recomputes the forward, 2·N more. Attention's sequence-length term is not counted, and the
(tied) lm_head counts for every token although only response positions are projected
(``nsr_study.logprobs``): the figure is a convention to compare runs and cards, not a count
of the kernels' work. Padding tokens are not counted: compute spent on them is waste.
"""

from __future__ import annotations

# Dense bf16 tensor-core peak in TFLOP/s: half of the datasheet's "with sparsity" figure. Keys are
# matched, in this order, against torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {
    "H100 80GB HBM3": 989.4,  # H100 SXM5 (1,979 with sparsity)
    "H100 NVL": 835.5,  # 1,671 with sparsity
    "H100 PCIe": 756.5,  # 1,513 with sparsity
    "H200": 989.4,  # H200 SXM, the H100 SXM's tensor cores
    "A100": 312.0,  # A100 SXM4 / PCIe (624 with sparsity)
}


def forward_flops(n_params: int, tokens: int) -> float:
    """FLOPs of one forward pass over ``tokens`` tokens (the π_old log-probs)."""
    return 2.0 * n_params * tokens


def update_flops(n_params: int, tokens: int, recompute: bool) -> float:
    """FLOPs of forward + backward over ``tokens`` tokens, plus the recomputed forward of
    gradient checkpointing: 6·N or 8·N per token."""
    return (8.0 if recompute else 6.0) * n_params * tokens


def peak_bf16_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak, or None for a card not in ``PEAK_BF16_TFLOPS``."""
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def mfu(flops: float, seconds: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the card's peak."""
    if seconds <= 0 or peak_tflops <= 0:
        raise ValueError(f"MFU needs positive seconds and peak, got {seconds} s and {peak_tflops} TFLOP/s")
    return flops / seconds / (peak_tflops * 1e12)
