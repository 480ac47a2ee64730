"""Models load from safetensors only, never from pickles, and never with remote code."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from nsr_study.loading import load_causal_lm


def test_a_pickle_checkpoint_is_refused_naming_the_file(tmp_path):
    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=1, intermediate_size=32, vocab_size=50))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # what older transformers wrote
    with pytest.raises(ValueError, match=r"no \*\.safetensors weights \(found pickle files pytorch_model\.bin\)"):
        load_causal_lm(tmp_path, "cpu")
    model.save_pretrained(tmp_path)
    loaded = load_causal_lm(tmp_path, "cpu")
    assert loaded.dtype == torch.float32 and not loaded.config.to_dict().get("auto_map")
