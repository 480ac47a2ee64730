"""Source fingerprints follow the code a module can run, and nothing else."""

import shutil

import pytest

from nsr_study import sources


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the package's source to edit."""
    copy = tmp_path / "nsr_study"
    shutil.copytree(sources.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sources, "PACKAGE", copy)
    return copy


def test_closure_follows_imports_including_function_level_ones():
    assert sources.closure("nsr_study.findings") == ["nsr_study.findings", "nsr_study.intervals", "nsr_study.metrics"]
    # train imports nsr_study.config inside run(): part of what it runs
    assert {"nsr_study.update", "nsr_study.objectives", "nsr_study.config"} <= set(sources.closure("nsr_study.train"))
    assert "nsr_study.findings" not in sources.closure("nsr_study.train")


def test_hash_changes_with_an_imported_module_only(package):
    findings, train = sources.source_hash("nsr_study.findings"), sources.source_hash("nsr_study.train")
    (package / "intervals.py").write_text((package / "intervals.py").read_text() + "\n# an edit\n")
    assert sources.source_hash("nsr_study.findings") != findings
    assert sources.source_hash("nsr_study.train") == train  # training does not import the statistics
    (package / "intervals.py").touch()
    assert sources.source_hash("nsr_study.findings") == sources.source_hash("nsr_study.findings")


def test_unknown_module_is_refused():
    with pytest.raises(ValueError, match="'nsr_study.nothing' is not a module of the nsr_study package"):
        sources.source_hash("nsr_study.nothing")
