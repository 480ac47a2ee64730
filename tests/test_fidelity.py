"""The fidelity table (docs/training.md) and config/config.yaml say the same: every `train.*`,
`evaluate.*` and `data.*` row's "this study" value is the config's (schema defaults filled),
and every train/evaluate setting that affects results has a row."""

import yaml

from conftest import REPO, study_config
from nsr_study.config import RUNTIME_ONLY

HEADING = "## Fidelity to the paper"


def table_rows(readme: str) -> dict[str, str]:
    """{config path: its "this study" cell} of the fidelity table's rows keyed by a config path."""
    section = readme.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and cells[0].strip("`").split(".")[0] in ("train", "evaluate", "data"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def lookup(config: dict, path: str):
    for key in path.split("."):
        config = config[key]
    return config


def test_every_row_states_the_configs_value():
    config, rows = study_config(), table_rows((REPO / "docs" / "training.md").read_text())
    wrong = {path: (cell, lookup(config, path)) for path, cell in rows.items()
             if yaml.safe_load(cell.strip("`")) != lookup(config, path)}
    assert not wrong, f"docs/training.md fidelity table vs config/config.yaml (table, config): {wrong}"


def test_every_results_setting_has_a_row():
    config, rows = study_config(), table_rows((REPO / "docs" / "training.md").read_text())
    settings = {f"{section}.{k}" for section in ("train", "evaluate") for k in config[section] if k not in RUNTIME_ONLY}
    assert settings - set(rows) == set(), "settings without a row in the docs/training.md fidelity table"


def test_a_changed_value_is_caught():
    readme = (REPO / "docs" / "training.md").read_text().replace("| `train.lr` | `1.0e-6` |", "| `train.lr` | `2.0e-6` |")
    rows = table_rows(readme)
    assert rows["train.lr"] == "`2.0e-6`" and yaml.safe_load(rows["train.lr"].strip("`")) != study_config()["train"]["lr"]
