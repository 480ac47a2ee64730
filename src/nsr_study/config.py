"""Config checks that fail before any job runs, naming the offending field.

Snakemake's ``validate`` stops at the first schema error and prints the schema; a user
needs every problem at once, each as ``field.path: what is wrong``. ``check_config`` gives
that for the JSON schema, then adds the checks a schema cannot express (files exist,
names unique, batch sizes divide).
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config value that would make the study wrong or crash later."""


# train/evaluate settings that change how fast a job runs, never its results: they are passed
# to jobs outside the cell config, so changing them reruns nothing and resumes checkpoints.
# Sampling is seeded per prompt, so generation_batch_size changes no sample (nsr_study.rollout);
# hf_compiled is not here: it samples from a copy in the compute dtype, whose logits differ.
RUNTIME_ONLY = ("threads", "micro_batch_size", "generation_batch_size", "logprob_chunk", "shard_size",
                "gradient_checkpointing", "checkpoint_every", "keep_checkpoint", "gpu_memory_utilization",
                "collective_timeout_min")


def _field(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<config>"


def _describe(err: jsonschema.ValidationError) -> str:
    where = _field(err.absolute_path)
    if err.validator == "required":
        missing = [p for p in err.validator_value if p not in err.instance]
        return "; ".join(f"{_field([*err.absolute_path, m])}: required field is missing" for m in missing)
    if err.validator == "additionalProperties":
        allowed = f"; allowed: {', '.join(err.schema['properties'])}" if "per_objective" in err.absolute_path else ""
        return f"{where}: {err.message.replace('Additional properties', 'unknown field(s)')}{allowed}"
    return f"{where}: {err.message}"


def schema_errors(config: dict, schema_path: str | Path) -> list[str]:
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(_describe(e) for e in validator.iter_errors(config))


def semantic_errors(config: dict) -> list[str]:
    """Checks on a schema-valid config with defaults filled in."""
    errors = []
    data = config["data"]
    if data["source"] == "local":
        local = data.get("local")
        if not local:
            errors.append("data.local: required when data.source is 'local' (give train and test paths)")
        else:
            errors += [f"data.local.{k}: file not found: {v}" for k, v in local.items() if not Path(v).is_file()]
    if data["source"] == "synthetic":
        # the sampled train has round(fraction * n_train) rows (plus at most one per stratum that
        # the per-stratum minimum forces); every synthetic row has a gold answer
        sampled = round(data["train_fraction"] * data["synthetic"]["n_train"])
        if data["val_size"] >= sampled:
            errors.append(f"data.val_size: {data['val_size']} leaves no training rows: the sampled train has about "
                          f"{sampled} rows (data.train_fraction × data.synthetic.n_train)")
    errors += synthetic_task_errors(data["synthetic"], config["models"]) if data["source"] == "synthetic" else []
    errors += [f"models[{i}].id: a tiny model is built at results/models/{m['name']}, got {m['id']}"
               for i, m in enumerate(config["models"]) if "tiny" in m and m["id"] != f"results/models/{m['name']}"]
    names = [m["name"] for m in config["models"]]
    errors += [f"models: name '{n}' is used more than once" for n in sorted({n for n in names if names.count(n) > 1})]
    # several ranks: vllm runs one engine per rank (nsr_study.rollout.VLLMBackend); hf decodes on
    # the sharded policy, which the unsharded compiled copy of hf_compiled is not
    hf = [f"{section}.backend" for section in ("train", "evaluate") if config[section]["backend"] == "hf"]
    errors += [f"models[{i}].gpus: {m['gpus']} ranks cannot decode from train.hf_compiled's unsharded copy "
               f"({' and '.join(hf)} hf); set train.hf_compiled false, or use the vllm backend"
               for i, m in enumerate(config["models"]) if m["gpus"] > 1 and config["train"]["hf_compiled"] and hf]
    return errors + benchmark_errors(config["benchmarks"]) + train_errors(config["train"])


def synthetic_task_errors(synthetic: dict, models: list[dict]) -> list[str]:
    """Each synthetic task with its own extra test set and its own prior: longer chains are the
    sums task's, B-only problems and the two-strategy prior (``tiny.rare_share``) the strategies
    task's, whose prior parses every train problem as a two-strategy sum."""
    task, errors = synthetic["task"], []
    if task == "strategies" and synthetic["n_longer"]:
        errors.append("data.synthetic.n_longer: must be 0 with task strategies (longer chains are the sums task's)")
    if task == "sums" and synthetic["n_rare"]:
        errors.append("data.synthetic.n_rare: must be 0 with task sums (B-only problems are the strategies task's)")
    for i, m in enumerate(models):
        if "tiny" in m and (m["tiny"]["rare_share"] is None) == (task == "strategies"):
            errors.append(f"models[{i}].tiny.rare_share: {m['tiny']['rare_share']} with data.synthetic.task {task}: "
                          "the two-strategy prior (a number) goes with task strategies, the sums prior (null) with sums")
    return errors


def benchmark_errors(benchmarks: list[dict]) -> list[str]:
    """The first test set is `math` (the data section's sample, no source of its own); every
    other one has exactly one source; names are unique."""
    errors = []
    first = benchmarks[0]
    if first["name"] != "math" or "local" in first or "hub" in first:
        errors.append("benchmarks[0]: must be {name: math}, the stratified test sample of the data section "
                      f"(got {first})")
    for i, b in enumerate(benchmarks[1:], 1):
        if ("local" in b) == ("hub" in b):
            errors.append(f"benchmarks[{i}] ({b['name']}): give exactly one of local (a file) or hub {{id, split}}")
    names = [b["name"] for b in benchmarks]
    errors += [f"benchmarks: name '{n}' is used more than once" for n in sorted({n for n in names if names.count(n) > 1})]
    return errors


def train_errors(t: dict) -> list[str]:
    """Training settings the trainer cannot honour faithfully."""
    errors = []
    batch = t["prompts_per_step"] * t["rollouts_per_prompt"]
    if batch % t["minibatch_size"]:
        errors.append(f"train.minibatch_size: {t['minibatch_size']} does not divide the rollout batch "
                      f"prompts_per_step × rollouts_per_prompt = {batch}")
    if t["top_p"] != 1:
        errors.append(f"train.top_p: {t['top_p']} is not supported, only 1: the update's log-probs are those of "
                      "softmax(logits / train.temperature), which top-p truncation of the sampler would contradict")
    return errors


def objective_train(train: dict, objective: str) -> dict:
    """The train section of one objective's cells: the shared settings with that objective's
    ``train.per_objective`` entry over them, and ``per_objective`` itself left out. The train rule's
    params hold this, so changing one objective's entry changes (and reruns) only its cells."""
    shared = {k: v for k, v in train.items() if k != "per_objective"}
    return shared | train["per_objective"].get(objective, {})


def check_cell(cell: dict) -> None:
    """The training settings of one cell, for callers that bypass the workflow's check."""
    errors = train_errors(cell["train"])
    if errors:
        raise ConfigError("invalid cell config:\n  " + "\n  ".join(errors))


def check_config(config: dict, schema_path: str | Path, fill_defaults) -> None:
    """Raise ConfigError listing every problem; ``fill_defaults(config)`` runs between the
    schema and the semantic checks (the Snakefile passes Snakemake's ``validate``)."""
    errors = schema_errors(config, schema_path)
    if not errors:
        fill_defaults(config)
        errors = semantic_errors(config)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def sorted_keys(x):
    """``x`` with the keys of every mapping in sorted order. Snakemake reruns a job whose params
    changed, and it compares dicts with their key order: without this, writing the same config
    with its keys in another order (or dumping it with ``yaml.safe_dump``) would rerun jobs."""
    if isinstance(x, dict):
        return {k: sorted_keys(x[k]) for k in sorted(x)}
    if isinstance(x, list):
        return [sorted_keys(v) for v in x]
    return x


def load_config(paths: list[str | Path], schema_path: str | Path) -> dict:
    """The config a rule sees: the YAML files overlaid in order (as ``--configfile`` does),
    checked, with the schema's defaults filled in. For bench scripts and tests, so that no
    default is restated outside the schema."""
    from snakemake.utils import update_config, validate

    config: dict = {}
    for p in paths:
        update_config(config, yaml.safe_load(Path(p).read_text()))
    check_config(config, schema_path, fill_defaults=lambda c: validate(c, str(schema_path)))
    return config


def flat(config: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1}}`` → ``{"train.lr": 1}``: a config's fields by their dotted names
    (checkpoint comparisons, MLflow params)."""
    out = {}
    for key, value in config.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out
