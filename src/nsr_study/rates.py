"""Measured speeds: the throughput file (``throughput.yaml`` beside this module, or one written
by ``bench/gpu_check.sh``), checked against its schema, and the rates one training step's
measurement gives, with the generate calls measured besides it (``decoding``: the evaluation's
batch and length). Raw seconds measured by the bench scripts on a named card and backend; a
(card, backend, model) without a measurement has no rates, never a guess."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

THROUGHPUT = resources.files("nsr_study") / "throughput.yaml"

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}
_COUNT = {"type": "integer", "minimum": 1}
_TEXT = {"type": "string", "minLength": 1}
_MEASUREMENT = {  # what every measured entry states: where, with what, when and how
    "card": _TEXT,
    "backend": {"enum": ["hf", "hf-compiled", "vllm"]},  # hf-compiled: HFBackend(compiled=True), train.hf_compiled
    "shape": {"type": "string"},
    "parameters": _COUNT,
    "models": {"type": "array", "minItems": 1, "items": _TEXT},
    "software": _TEXT,
    "source": _TEXT,
    "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},  # the day it was measured
    "batch": _COUNT, "prompt_tokens": _COUNT, "new_tokens": _COUNT,
}
_REQUIRED = ["card", "backend", "models", "software", "source", "batch", "prompt_tokens", "new_tokens", "seconds"]
THROUGHPUT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["grading", "generation"],
    "properties": {
        "grading": {
            "type": "object", "additionalProperties": False, "required": ["answers_per_s_per_worker", "source"],
            "properties": {"answers_per_s_per_worker": _POSITIVE, "source": _TEXT},
        },
        "generation": {"type": "array", "items": {  # one training step: rollout, log-probs, update
            "type": "object", "additionalProperties": False, "required": _REQUIRED,
            "properties": _MEASUREMENT | {
                "seconds": {"type": "object", "additionalProperties": False,
                            "required": ["rollout", "logprob", "update"],
                            "properties": {"rollout": _POSITIVE, "logprob": _POSITIVE, "update": _POSITIVE}}},
        }},
        "decoding": {"type": "array", "items": {  # one generate call at another batch or length
            "type": "object", "additionalProperties": False, "required": _REQUIRED,
            "properties": _MEASUREMENT | {"seconds": _POSITIVE},
        }},
        "checks": {"type": "object"},  # bench/gpu_check.py's other figures, not rates
    },
}


class PlanError(ValueError):
    """A throughput file or request the plan cannot use."""


@dataclass(frozen=True)
class Rates:
    """Speeds of one model on one card and backend, derived from one measured training step
    and any generate calls measured besides it."""

    decode_step_s: float  # seconds per decoding step of the training step's generate call
    decode_batch: int  # sequences per call in that measurement
    forward_s_per_token: float  # π_old log-probs (no gradient), per prompt + response token
    update_s_per_token: float  # forward + backward + optimizer steps, per prompt + response token
    prompt_tokens: int  # prompt length of the measurement, assumed for the study's prompts
    source: str  # one line per measurement it rests on
    # every measured generate call as (sequences, new tokens, seconds per decoding step); empty:
    # the training step's call alone, its length unstated
    decoding: tuple[tuple[int, int, float], ...] = ()


def describe(entry: dict) -> str:
    """Where a measurement comes from, for the plan's list of sources."""
    when = f", measured {entry['date']}" if "date" in entry else ", date not recorded"
    return f"{entry['card']}, {entry['backend']}, {entry['software']}{when}: {entry['source']}"


def rates_from(entry: dict, calls: list[dict] = ()) -> Rates:
    """Rates from one ``generation`` entry of the throughput file (the rollout's seconds per
    decoding step, and the log-prob and update seconds per token of the step's sequences) and
    the ``decoding`` entries ``calls`` of the same card, backend and model."""
    seconds = entry["seconds"]
    tokens = entry["batch"] * (entry["prompt_tokens"] + entry["new_tokens"])
    decoding = [(entry["batch"], entry["new_tokens"], seconds["rollout"] / entry["new_tokens"])]
    decoding += [(c["batch"], c["new_tokens"], c["seconds"] / c["new_tokens"]) for c in calls]
    return Rates(decode_step_s=seconds["rollout"] / entry["new_tokens"], decode_batch=entry["batch"],
                 forward_s_per_token=seconds["logprob"] / tokens, update_s_per_token=seconds["update"] / tokens,
                 prompt_tokens=entry["prompt_tokens"], source="\n".join(describe(e) for e in [entry, *calls]),
                 decoding=tuple(sorted(decoding)))


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
        for section, extra in (("generation", ()), ("decoding", ("batch", "new_tokens"))):
            seen = {}
            for i, entry in enumerate(data.get(section, [])):
                for model in entry["models"]:
                    key = (entry["card"], entry["backend"], model, *(entry[k] for k in extra))
                    if key in seen:
                        errors.append(f"{path}:{_line(root, [section, i])}: {section}[{i}]: {key} is measured "
                                      f"in {section}[{seen[key]}] already")
                    seen[key] = i
    if errors:
        raise PlanError("invalid throughput file:\n  " + "\n  ".join(errors))
    return data


def measured_cards(throughput: dict) -> list[str]:
    return sorted({entry["card"] for entry in throughput["generation"]})


def chosen_card(throughput: dict, asked: str | None) -> str:
    """The card whose measurements price a plan: ``asked`` (``--card``), or the only one measured;
    with several measured and none asked, the caller must choose (no silent pick)."""
    cards = measured_cards(throughput)
    card = asked or (cards[0] if len(cards) == 1 else None)
    if card not in cards:
        raise PlanError(f"--card: {'choose' if card is None else f'{card} has no measurement;'} one of {cards}")
    return card


def model_parameters(throughput: dict, model_id: str) -> int | None:
    """Parameters of a model, from any measurement of its shape that states them."""
    return next((e["parameters"] for e in throughput["generation"] if model_id in e["models"] and "parameters" in e),
                None)


def find_rates(throughput: dict, card: str, backend: str, model_id: str) -> Rates | None:
    def mine(e):
        return e["card"] == card and e["backend"] == backend and model_id in e["models"]

    for entry in throughput["generation"]:
        if mine(entry):
            return rates_from(entry, [c for c in throughput.get("decoding", []) if mine(c)])
    return None
