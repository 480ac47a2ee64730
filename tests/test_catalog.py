"""Snakemake workflow catalog standards: the files the catalog and its users look for, and a
config/README.md that describes every section of the schema."""

import yaml

from conftest import REPO


def test_config_readme_describes_every_schema_section():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    readme = (REPO / "config/README.md").read_text()
    missing = [s for s in schema["properties"] if f"**`{s}`**" not in readme]
    assert not missing, f"config/README.md does not describe {missing}"


def test_catalog_files_are_there():
    catalog = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert catalog["usage"]["software-stack-deployment"]["conda"] is True and catalog["usage"]["report"] is True
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert (REPO / ".test/config/micro.yaml").is_file() and (REPO / "workflow/report/workflow.rst").is_file()
