"""The documentation stays true: every relative link and #anchor in README.md, config/README.md
and docs/ resolves, every file any tracked file names is in the tree, every figure the docs
name is one the workflow makes, and every figure it makes is explained somewhere in them."""

import json
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

from conftest import REPO
from test_envs import in_workflow

DOCS = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(path: Path) -> str:
    """The file without its fenced code blocks (a shell example is not a link)."""
    return FENCE.sub("", path.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but hyphens and underscores dropped,
    spaces to hyphens (a link's text stays, its target goes)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen, out = {}, set()
    for line in prose(path).splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            base = slug(m.group(1))
            out.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return out


def test_slug_is_githubs():
    assert slug("Several GPUs on one node") == "several-gpus-on-one-node"
    assert slug("SLURM, conda and the report") == "slurm-conda-and-the-report"
    assert slug("The data stage (`workflow/rules/data.smk`, `nsr_study.data`)") == "the-data-stage-workflowrulesdatasmk-nsr_studydata"


def test_there_are_docs_pages():
    assert len(DOCS) > 4


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


# A repository path (under a top-level folder of the tree) or any ``*.md`` file, as code,
# configs and docs name them ("docs/training.md", "see BENCHMARKS.md", "../shared/x.md").
NAMED_FILE = re.compile(r"(?<![\w./-])((?:\.\./)*(?:src|tests|docs|workflow|config|ops|bench|profiles|envs|\.ci|\.test)/"
                        r"[\w./-]*\w|[\w./-]*\w\.md)\b")
# The name of the design notes this repository grew from (not part of it), written as a
# character class, as in `grep '[p]attern'`, so that this line does not name them itself.
OUTSIDE_NOTES = re.compile(r"\bG[U]IDE\b")


def named_files_outside(path: Path, text: str) -> list[str]:
    """The files ``text`` (of ``path``) names that are not in the tree: a name counts if it
    resolves, inside the repository, from the naming file's folder, the root or docs/."""
    out = []
    for ref in NAMED_FILE.findall(text):
        places = [(base / ref).resolve() for base in (path.parent, REPO, REPO / "docs")]
        if not any(p.is_relative_to(REPO) and p.exists() for p in places):
            out.append(ref)
    return out


def test_named_files_outside_are_found():
    text = "see BENCHMARKS.md and ../shared/data/BENCHMARKS.md, not docs/nothing.md; docs/training.md is here"
    assert named_files_outside(REPO / "tests" / "x.py", text) == ["BENCHMARKS.md", "../shared/data/BENCHMARKS.md",
                                                                 "docs/nothing.md"]


def test_every_named_file_is_in_the_tree():
    """A clone stands on its own: no tracked file points a reader at a file it lacks (data read
    at test time from beside the clone is named by its folder, not by a note about it). This
    file alone is left out: its examples name missing files on purpose."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    broken = []
    for name in tracked.stdout.split("\0"):
        path = REPO / name
        if path == Path(__file__):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue  # binary, a submodule, or deleted in the work tree
        broken += [f"{name}: {ref}" for ref in named_files_outside(path, text)]
        if OUTSIDE_NOTES.search(text):
            broken.append(f"{name}: cites the design notes outside the tree (write what they say into docs/ instead)")
    assert len(tracked.stdout) > 0 and not broken, broken


@pytest.fixture(scope="module")
def made_figures(tmp_path_factory) -> set[str]:
    """The stems of the figures (PNG/SVG) the workflow's rules write, on the study config."""
    out = in_workflow("print(json.dumps(sorted({str(f) for r in wf.rules for f in r.output "
                      "if str(f).endswith(('.png', '.svg'))})))", tmp_path_factory.mktemp("docs"))
    stems = {re.sub(r"\.(png|svg)$", "", Path(f).name) for f in json.loads(out.splitlines()[-1])}
    return {re.sub(r"\{(\w+),[^{}]*\}", r"{\1}", stem) for stem in stems}  # {model,<constraint>} → {model}


def named_figures(text: str) -> set[str]:
    """Figures a page names: ``results/figures/<stem>.…`` or a backticked ``<stem>.png|svg``."""
    return set(re.findall(r"results/figures/([\w{}]+)\.", text)) | set(re.findall(r"`([\w{}]+)\.(?:png|svg)`", text))


def figure_pattern(stem: str) -> re.Pattern:
    """A made figure's stem as a pattern: a wildcard (``paper_comparison_{model}``) stands for
    itself or any value."""
    parts = re.split(r"\{[^{}]*\}", stem)
    return re.compile(r"(?:\{\w+\}|[\w.-]+)".join(map(re.escape, parts)))


def test_every_figure_named_in_the_docs_is_made(made_figures):
    patterns = [figure_pattern(f) for f in made_figures]
    named = {stem for d in DOCS for stem in named_figures(d.read_text())}
    unknown = sorted(s for s in named if not any(p.fullmatch(s) for p in patterns))
    assert not unknown, f"the docs name figures no rule makes: {unknown} (made: {sorted(made_figures)})"


def test_every_figure_made_is_explained(made_figures):
    text = "\n".join(d.read_text() for d in DOCS)
    missing = sorted(f for f in made_figures if not figure_pattern(f).search(text))
    assert not missing, f"figures the workflow makes that no page explains: {missing}"
