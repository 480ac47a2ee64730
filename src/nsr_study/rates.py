"""Measured speeds: the throughput file (``throughput.yaml`` beside this module), checked
against its schema, and the rates one training step's measurement gives. Raw seconds measured by
the bench scripts on a named card and backend; a (card, backend, model) without a measurement
has no rates, never a guess."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

THROUGHPUT = resources.files("nsr_study") / "throughput.yaml"

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_COUNT = {"type": "integer", "minimum": 1}
THROUGHPUT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["grading", "generation"],
    "properties": {
        "grading": {
            "type": "object", "additionalProperties": False, "required": ["answers_per_s_per_worker", "source"],
            "properties": {"answers_per_s_per_worker": _POSITIVE, "source": {"type": "string", "minLength": 1}},
        },
        "generation": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["card", "backend", "models", "software", "source", "batch", "prompt_tokens", "new_tokens",
                         "seconds"],
            "properties": {
                "card": {"type": "string", "minLength": 1},
                "backend": {"enum": ["hf", "vllm"]},
                "shape": {"type": "string"},
                "parameters": _COUNT,
                "models": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "software": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "batch": _COUNT, "prompt_tokens": _COUNT, "new_tokens": _COUNT,
                "seconds": {"type": "object", "additionalProperties": False,
                            "required": ["rollout", "logprob", "update"],
                            "properties": {"rollout": _POSITIVE, "logprob": _POSITIVE, "update": _POSITIVE}},
            },
        }},
    },
}


class PlanError(ValueError):
    """A throughput file or request the plan cannot use."""


@dataclass(frozen=True)
class Rates:
    """Speeds of one model on one card and backend, derived from one measured training step."""

    decode_step_s: float  # seconds per decoding step of a generate call
    decode_batch: int  # sequences per call in the measurement
    forward_s_per_token: float  # π_old log-probs (no gradient), per prompt + response token
    update_s_per_token: float  # forward + backward + optimizer steps, per prompt + response token
    prompt_tokens: int  # prompt length of the measurement, assumed for the study's prompts
    source: str


def rates_from(entry: dict) -> Rates:
    """Rates from one ``generation`` entry of the throughput file: the rollout's seconds per
    decoding step, and the log-prob and update seconds per token of the step's sequences."""
    seconds = entry["seconds"]
    tokens = entry["batch"] * (entry["prompt_tokens"] + entry["new_tokens"])
    return Rates(decode_step_s=seconds["rollout"] / entry["new_tokens"], decode_batch=entry["batch"],
                 forward_s_per_token=seconds["logprob"] / tokens, update_s_per_token=seconds["update"] / tokens,
                 prompt_tokens=entry["prompt_tokens"],
                 source=f"{entry['card']}, {entry['backend']}, {entry['software']}: {entry['source']}")


def _line(node, path) -> int:
    """1-based line of the YAML node at ``path`` (or of its deepest existing ancestor)."""
    for key in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
    return node.start_mark.line + 1


def load_throughput(path) -> dict:
    """The throughput file, checked: every problem is reported at once with its line and field."""
    text = Path(path).read_text()
    try:
        data, root = yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as e:
        raise PlanError(f"{path}: not valid YAML: {e}") from e
    errors = [f"{path}:{_line(root, e.absolute_path)}: {e.json_path.removeprefix('$.')}: {e.message}"
              for e in jsonschema.Draft202012Validator(THROUGHPUT_SCHEMA).iter_errors(data)]
    if not errors:
        seen = {}
        for i, entry in enumerate(data["generation"]):
            for model in entry["models"]:
                key = (entry["card"], entry["backend"], model)
                if key in seen:
                    errors.append(f"{path}:{_line(root, ['generation', i])}: generation[{i}]: {key} is measured "
                                  f"in generation[{seen[key]}] already")
                seen[key] = i
    if errors:
        raise PlanError("invalid throughput file:\n  " + "\n  ".join(errors))
    return data


def model_parameters(throughput: dict, model_id: str) -> int | None:
    """Parameters of a model, from any measurement of its shape that states them."""
    return next((e["parameters"] for e in throughput["generation"] if model_id in e["models"] and "parameters" in e),
                None)


def find_rates(throughput: dict, card: str, backend: str, model_id: str) -> Rates | None:
    for entry in throughput["generation"]:
        if entry["card"] == card and entry["backend"] == backend and model_id in entry["models"]:
            return rates_from(entry)
    return None
