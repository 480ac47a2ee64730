"""The fingerprint of a module's source and of every package module it imports: what lets a
result follow its code.

Rules run the package by ``python -m`` or a thin ``script:``, and the default profile leaves
Snakemake's ``code`` trigger off (touching a file must never re-plan GPU training), so
Snakemake alone does not see an edit of ``nsr_study.intervals``. A rule whose params hold
``source_hash`` of the modules it runs reruns when their source, or the source of anything they
import from the package, changes, and only then; a checkpoint records ``source_hash`` of the
training code, so a resumed run continues only what the same code trained
(``nsr_study.checkpoint``). Imports are read from the source (``ast``), function-level ones
included, so the closure is what the code can run, not what one run happened to import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xxhash

PACKAGE = Path(__file__).parent


def _file(module: str) -> Path:
    if not module.startswith("nsr_study.") or not (path := PACKAGE / f"{module.split('.', 1)[1]}.py").is_file():
        raise ValueError(f"{module!r} is not a module of the nsr_study package (no {module.split('.')[-1]}.py "
                         f"in {PACKAGE})")
    return path


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "nsr_study":
            found |= {f"nsr_study.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").is_file()}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nsr_study."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nsr_study.")}
    return found


def closure(*modules: str) -> list[str]:
    """``modules`` and every package module they import, directly or not, sorted."""
    seen, todo = set(), list(modules)
    while todo:
        if (m := todo.pop()) not in seen:
            seen.add(m)
            todo += _imports(_file(m))
    return sorted(seen)


def source_hash(*modules: str, files: tuple[str | Path, ...] = ()) -> str:
    """xxh3 of the names and source bytes of ``closure(*modules)`` and of ``files`` (a rule's
    script, by file name): changes with any edit of that code, comments included, and with
    nothing else (not a touch, not another module, not where the checkout is)."""
    h = xxhash.xxh3_64()
    for name, path in [(m, _file(m)) for m in closure(*modules)] + [(Path(f).name, Path(f)) for f in files]:
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
