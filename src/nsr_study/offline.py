"""Offline runs: when the config needs nothing from the Hugging Face hub, nothing may call it.

``datasets``, ``huggingface_hub`` and ``transformers`` reach the network even for local files
(``load_dataset("json", ...)`` sends a download-count request), which on a node without
network waits for a timeout and otherwise says what a run loads. The Snakefile sets these
variables for every job of a config without a hub source.
"""

from __future__ import annotations

from pathlib import Path

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}


def needs_hub(config: dict) -> bool:
    """Whether the data, a test set of ``benchmarks`` or a model comes from the hub: a model id
    that is neither built here (``tiny``) nor an existing directory is a hub id."""
    if config["data"]["source"] == "hub" or any("hub" in b for b in config["benchmarks"]):
        return True
    return any("tiny" not in m and not Path(m["id"]).is_dir() for m in config["models"])


def offline_env(config: dict) -> dict[str, str]:
    """Environment variables that keep every job off the network; empty when the hub is needed."""
    return {} if needs_hub(config) else dict(OFFLINE_ENV)
