"""Per-rule software: the conda environments envs/*.yaml (valid, pinned as pyproject.toml pins,
holding every package the rule's code imports) and the package itself, which reaches every job
through the Snakefile's shell prefix, also where Snakemake strips an inherited PYTHONPATH."""

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO

SRC = REPO / "src"


# Loads the workflow with Snakemake's API in a child process: loaded into pytest's own process,
# Snakemake's module objects break vLLM's module scan in tests/test_vllm.py.
LOAD_WORKFLOW = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings
api = SnakemakeApi(OutputSettings()).__enter__()  # left open: the process ends after the code below
wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(sys.argv[1]), workdir=Path.cwd())._workflow
"""


def in_workflow(code: str, cwd: Path, env=None) -> str:
    """Run ``code`` after loading the workflow as ``wf`` (which also sets its shell prefix); its stdout."""
    res = subprocess.run([sys.executable, "-c", LOAD_WORKFLOW + code, str(REPO / "Snakefile")], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> list[dict]:
    """Each rule's name, conda env, script and shell command."""
    out = in_workflow("print(json.dumps([dict(name=r.name, conda_env=str(r.conda_env or ''), script=r.script, "
                      "shellcmd=r.shellcmd) for r in wf.rules]))", tmp_path_factory.mktemp("envs"))
    return json.loads(out.splitlines()[-1])


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["vllm"] + extras["trackers"]
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def env_file(name: str) -> dict:
    return yaml.safe_load((REPO / "envs" / name).read_text())


def env_pip_requirements(env: dict) -> dict[str, Requirement]:
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {canonicalize_name(r.name): r for r in map(Requirement, pip)}


ENVS = sorted(p.name for p in (REPO / "envs").glob("*.yaml"))


@pytest.mark.parametrize("name", ENVS)
def test_env_is_a_conda_file_with_the_projects_python(name):
    env = env_file(name)
    assert env["channels"] and isinstance(env["dependencies"], list), name
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(python.split("=")[1]) in Requirement(f"python{requires}").specifier, (name, python, requires)


@pytest.mark.parametrize("name", ENVS)
def test_env_pins_are_pyprojects(name):
    project = pyproject_requirements()
    for key, req in env_pip_requirements(env_file(name)).items():
        assert key in project, f"envs/{name}: {req} is not a dependency in pyproject.toml"
        want = project[key]
        assert (req.specifier, req.extras) == (want.specifier, want.extras), f"envs/{name}: {req} but pyproject.toml: {want}"


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in a file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


def third_party_imports(entry: Path) -> set[str]:
    """Top-level third-party modules imported by ``entry`` and the nsr_study modules it reaches."""
    todo, seen, found = [entry], set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "nsr_study":
                mod = SRC / (name.replace(".", "/") + ".py")
                todo += [mod] if mod.is_file() else [SRC / name.replace(".", "/") / "__init__.py"]
            elif top not in sys.stdlib_module_names and top not in ("snakemake", "__future__"):
                found.add(top)
    return found


def rule_entry(rule: dict) -> Path:
    """The file a rule runs: its script, or the module of its `python -m nsr_study COMMAND` command."""
    if rule["script"]:
        return (REPO / "workflow/rules" / rule["script"]).resolve()
    command = re.search(r"python -m nsr_study (\w+)", rule["shellcmd"])[1]
    return SRC / "nsr_study" / f"{command}.py"


def test_every_rule_has_an_env_holding_what_its_code_imports(rules):
    dists = packages_distributions()
    checked = []
    for rule in rules:
        if rule["name"] == "all":
            continue
        assert rule["conda_env"], f"rule {rule['name']} has no conda env"
        env_name = Path(rule["conda_env"]).name
        declared = set(env_pip_requirements(env_file(env_name)))
        for module in third_party_imports(rule_entry(rule)):
            providers = {canonicalize_name(module)} | {canonicalize_name(d) for d in dists.get(module, [])}
            assert providers & declared, f"rule {rule['name']} imports {module}, which envs/{env_name} lacks"
        checked.append(rule["name"])
    assert {"prepare_data", "train", "evaluate_cell", "figures"} <= set(checked)


def test_jobs_import_the_checkouts_package_without_an_inherited_pythonpath(tmp_path):
    """A conda job's environment has no PYTHONPATH (Snakemake deletes it) and the env has no
    nsr_study: the job's shell must still find the checkout's package. `python -S` leaves out
    site-packages, so an installed nsr_study cannot stand in for it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = f"{sys.executable} -S -c 'import nsr_study; print(nsr_study.__file__)'"
    out = in_workflow(f"from snakemake.shell import shell\nprint(shell({probe!r}, read=True).strip())", tmp_path, env)
    assert Path(out.splitlines()[-1]) == SRC / "nsr_study" / "__init__.py"
