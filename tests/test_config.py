"""Bad configs stop `snakemake -n` before any job, with a message naming the field."""

import pytest
import yaml

from conftest import REPO, snakemake
from nsr_study.config import ConfigError, check_config

BAD = {
    "unknown objective": ({"objectives": ["GRPO", "NSRR"]}, "objectives[1]: 'NSRR' is not one of"),
    "fraction zero": ({"data": {"train_fraction": 0}}, "data.train_fraction: 0 is less than or equal to the minimum"),
    "fraction above one": ({"data": {"test_fraction": 1.5}}, "data.test_fraction: 1.5 is greater than the maximum"),
    "negative lr": ({"train": {"lr": -1.0e-6}}, "train.lr: -1e-06 is less than the minimum of 0"),
    "model without id": ({"models": [{"name": "qwen"}]}, "models[0].id: required field is missing"),
    "per-objective key that must be shared": (
        {"train": {"per_objective": {"NSR": {"steps": 3}}}},
        "train.per_objective.NSR: unknown field(s) are not allowed ('steps' was unexpected); allowed: lr, ",
    ),
    "missing data path": (
        {"data": {"source": "local", "local": {"train": "/nope/train.jsonl", "test": "/nope/test.jsonl"}}},
        "data.local.train: file not found: /nope/train.jsonl",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_fails_dry_run_naming_the_field(case, tmp_path):
    overlay, message = BAD[case]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(overlay))
    res = snakemake("-n", "--cores", "1", "--configfile", tmp_path / "bad.yaml")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "invalid config" in out and message in out, out
    assert "Job stats" not in out  # stopped before planning any job


SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def _base():
    return {"models": [{"name": "m", "id": "org/m"}], "objectives": ["NSR"], "seeds": [0]}


def _fill(c):
    from snakemake.utils import validate

    validate(c, str(SCHEMA))


def test_all_problems_reported_at_once():
    cfg = _base() | {"objectives": ["X"], "train": {"lr": -1, "stepz": 3}}
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA, _fill)
    lines = str(err.value).splitlines()[1:]
    assert [ln.split(":")[0].strip() for ln in lines] == ["objectives[0]", "train.lr", "train"]


def test_semantic_checks_after_defaults():
    cfg = _base() | {"models": [{"name": "m", "id": "a"}, {"name": "m", "id": "b"}],
                     "train": {"minibatch_size": 5, "top_p": 0.95}, "data": {"source": "local"}}
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA, _fill)
    msg = str(err.value)
    assert "data.local: required when data.source is 'local'" in msg
    assert "models: name 'm' is used more than once" in msg
    assert "train.minibatch_size: 5 does not divide the rollout batch" in msg
    assert "train.top_p: 0.95 is not supported, only 1" in msg  # log-probs would not match the sampler


def test_defaults_filled_from_schema():
    cfg = _base()
    check_config(cfg, SCHEMA, _fill)
    assert cfg["data"]["train_fraction"] == 0.25 and cfg["train"]["lr"] == 1e-6
    assert cfg["data"]["hub"]["id"] == "DigitalLearningGmbH/MATH-lighteval"


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "m\n", "m\nx", "a\\b", ""])
def test_model_names_cannot_leave_results(name):
    """A name becomes a path component under results/; "m\\n" passed `$` before (?!\\n)."""
    cfg = _base() | {"models": [{"name": name, "id": "org/m"}]}
    with pytest.raises(ConfigError, match=r"models\[0\]\.name"):
        check_config(cfg, SCHEMA, _fill)


def test_ordinary_model_names_pass():
    cfg = _base() | {"models": [{"name": n, "id": "org/m"} for n in ("qwen2.5-0.5b", "Q_7B", "m1")]}
    check_config(cfg, SCHEMA, _fill)


def test_synthetic_val_size_must_leave_training_rows():
    cfg = _base() | {"data": {"source": "synthetic", "synthetic": {"n_train": 400}, "train_fraction": 0.5,
                              "val_size": 200}}
    with pytest.raises(ConfigError, match=r"data.val_size: 200 leaves no training rows: .* about 200 rows"):
        check_config(cfg, SCHEMA, _fill)
    cfg = _base() | {"data": {"source": "synthetic", "synthetic": {"n_train": 400}, "train_fraction": 0.5,
                              "val_size": 199}}
    check_config(cfg, SCHEMA, _fill)


def test_sorted_keys_orders_every_mapping_and_keeps_lists():
    from nsr_study.config import sorted_keys

    out = sorted_keys({"b": {"y": 1, "x": [{"q": 2, "p": 3}]}, "a": 0})
    assert out == {"a": 0, "b": {"x": [{"p": 3, "q": 2}], "y": 1}}
    assert list(out) == ["a", "b"] and list(out["b"]) == ["x", "y"] and list(out["b"]["x"][0]) == ["p", "q"]


def test_per_objective_refuses_unknown_objectives_keys_and_bad_values():
    cfg = _base() | {"train": {"per_objective": {"GRPX": {"kl_coef": 1e-3}, "NSR": {"lr": -1, "temperature": 2}}}}
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA, _fill)
    lines = sorted(str(err.value).splitlines()[1:])
    assert lines == [
        "  train.per_objective.NSR.lr: -1 is less than the minimum of 0",
        "  train.per_objective.NSR: unknown field(s) are not allowed ('temperature' was unexpected); allowed: lr, "
        "weight_decay, clip_eps, grad_clip, entropy_coef, kl_coef",
        "  train.per_objective: 'GRPX' is not one of ['GRPO', 'PSR', 'NSR', 'W_REINFORCE']",
    ]


def test_objective_train_applies_only_that_objectives_entry():
    """The study config: GRPO's cells get kl_coef 1e-3, the others the shared 0; no cell sees
    per_objective itself. Changing NSR's entry changes NSR's train section and no other."""
    from conftest import study_config
    from nsr_study.config import objective_train

    train = study_config()["train"]
    assert train["per_objective"] == {"GRPO": {"kl_coef": 1e-3}}  # no schema default filled into an entry
    cells = {o: objective_train(train, o) for o in ("GRPO", "PSR", "NSR", "W_REINFORCE")}
    assert {o: c["kl_coef"] for o, c in cells.items()} == {"GRPO": 1e-3, "PSR": 0.0, "NSR": 0.0, "W_REINFORCE": 0.0}
    assert all("per_objective" not in c for c in cells.values())
    assert {k: v for k, v in cells["GRPO"].items() if cells["PSR"][k] != v} == {"kl_coef": 1e-3}
    changed = train | {"per_objective": train["per_objective"] | {"NSR": {"lr": 3e-6}}}
    assert [o for o in cells if objective_train(changed, o) != cells[o]] == ["NSR"]
    assert objective_train(changed, "NSR") == cells["NSR"] | {"lr": 3e-6}


def test_benchmarks_default_to_math_and_each_other_set_needs_one_source():
    cfg = _base()
    check_config(cfg, SCHEMA, _fill)
    assert cfg["benchmarks"] == [{"name": "math", "gold": "solution"}]
    bad = _base() | {"benchmarks": [{"name": "aime", "local": "a.jsonl"}, {"name": "x", "gold": "answer"},
                                    {"name": "y", "local": "y.jsonl", "hub": {"id": "o/y"}}, {"name": "x", "local": "b"}]}
    with pytest.raises(ConfigError) as err:
        check_config(bad, SCHEMA, _fill)
    msg = str(err.value)
    assert "benchmarks[0]: must be {name: math}" in msg
    assert "benchmarks[1] (x): give exactly one of local (a file) or hub" in msg
    assert "benchmarks[2] (y): give exactly one of local" in msg and "name 'x' is used more than once" in msg
    typo = _base() | {"benchmarks": [{"name": "math"}, {"name": "a", "local": "a.jsonl", "gold": "boxed"}]}
    with pytest.raises(ConfigError, match=r"benchmarks\[1\]\.gold: 'boxed' is not one of"):
        check_config(typo, SCHEMA, _fill)


def test_each_synthetic_task_has_its_own_extra_test_set_and_prior():
    tiny = {"name": "tiny-c", "id": "results/models/tiny-c", "tiny": {"rare_share": 0.2}}
    cfg = _base() | {"data": {"source": "synthetic", "synthetic": {"task": "strategies", "n_longer": 4},
                              "val_size": 10, "train_fraction": 1.0},
                     "models": [tiny, {"name": "tiny-s", "id": "results/models/tiny-s", "tiny": {}}]}
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA, _fill)
    assert "data.synthetic.n_longer: must be 0 with task strategies" in str(err.value)
    assert "models[1].tiny.rare_share: None with data.synthetic.task strategies" in str(err.value)
    assert "models[0]" not in str(err.value)
    cfg["data"]["synthetic"] = {"task": "sums", "n_rare": 5}
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA, _fill)
    assert "data.synthetic.n_rare: must be 0 with task sums" in str(err.value)
    assert "models[0].tiny.rare_share: 0.2 with data.synthetic.task sums" in str(err.value)
