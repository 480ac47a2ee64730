"""The workflow passes Snakemake's linter and is formatted as snakefmt formats it
(line length in pyproject.toml), so CI catches a rule without a log or env, or a stray edit."""

import re
import shutil
import subprocess

import pytest

from conftest import REPO, snakemake


def test_snakemake_lint_finds_nothing():
    res = snakemake("--lint")
    assert res.returncode == 0, res.stdout + res.stderr


def test_snakefmt_leaves_the_workflow_unchanged():
    if shutil.which("snakefmt") is None:
        pytest.skip("snakefmt is not installed (it is in the `test` extra)")
    res = subprocess.run(["snakefmt", "--check", "--diff", "Snakefile", "workflow/"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]


# The oldest Snakemake that finds a profile by this file name (9.19 added profile.yaml; before,
# a profile folder had to hold config.yaml).
PROFILE_FILE_SINCE = {"config.yaml": "0", "profile.yaml": "9.19"}


def test_min_version_is_one_that_reads_our_profiles():
    from packaging.version import Version

    declared = Version(re.search(r'min_version\("([\d.]+)"\)', (REPO / "Snakefile").read_text())[1])
    for profile in [*(REPO / "profiles").iterdir(), REPO / "ops/slurm-local"]:
        files = [f for f in PROFILE_FILE_SINCE if (profile / f).is_file()]
        assert files, f"{profile} has no profile file"
        oldest = min(Version(PROFILE_FILE_SINCE[f]) for f in files)
        assert declared >= oldest, f"min_version {declared}, but Snakemake < {oldest} cannot read {profile}"
