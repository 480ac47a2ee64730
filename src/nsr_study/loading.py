"""Loading a model or tokenizer — a hub id, a tiny demo model or a trained policy — safely.

``trust_remote_code=False``: a hub repository cannot run its own Python here. Weights load from
safetensors only: a pickle ``pytorch_model.bin`` can execute code when unpickled, so it is
refused with a message saying how to convert it.
"""

from __future__ import annotations

from pathlib import Path

import torch


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def load_causal_lm(path: str | Path, device, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A causal LM on ``device`` from safetensors weights, float32 unless ``dtype`` says
    otherwise (a policy trains in fp32; a frozen reference may be stored in bf16)."""
    from transformers import AutoModelForCausalLM

    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        raise ValueError(f"{folder}: no *.safetensors weights{' (found pickle files ' + ', '.join(pickles) + ')' if pickles else ''}; "
                         "only safetensors are loaded (pickles can run code): convert with "
                         "AutoModelForCausalLM.from_pretrained(...).save_pretrained(dir, safe_serialization=True)")
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=False)
    return model.to(device)
