"""The data stage: load MATH, extract gold answers, stratified train/val/test samples.

Gold answer = content of the last balanced ``\\boxed{}``/``\\fbox{}`` of the solution (the
``answer`` column some copies carry is an uploader's extraction and is ignored). Rows
without one are dropped and counted per stratum, never kept to be graded wrong. Prompts are
not built here: the chat template belongs to the model, so it is applied at train time.

Input the study cannot use raises ``DataError`` naming the file and the 1-based line (JSON)
or row (parquet, hub), since a bare parser error leaves a user searching 7,500 rows. Levels
must be "Level 1".."Level 5" or "Level ?", MATH's own mark for an unrated problem (two
Geometry rows of the train split), which keeps a stratum of its own; any other string is
refused rather than silently becoming one more stratum.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from nsr_study.answers import has_box, last_boxed
from nsr_study.stratify import stratified_sample

if TYPE_CHECKING:  # imported where used: every training and evaluation job reads its jsonl through here
    import pandas as pd

REQUIRED_FIELDS = ("problem", "solution", "level", "type")
RECORD_FIELDS = ("id", "benchmark", "subject", "level", "problem", "solution", "answer")
MATH = "math"  # the first benchmark: the stratified test sample of MATH (config `benchmarks`)
UNRATED_LEVEL = "Level ?"
LEVELS = (*(f"Level {i}" for i in range(1, 6)), UNRATED_LEVEL)


class DataError(ValueError):
    """Input data the study cannot use; the message names the file and line or row."""


def describe(source: dict) -> str:
    """Where rows come from, as error messages and logs name it."""
    return str(source["path"]) if "path" in source else f"{source['hub']} split {source['split']}"


def _missing(value) -> bool:
    return value is None or value != value  # NaN: a null in a parquet float column


def _read_json(path: Path) -> list[tuple[str, object]]:
    """(location, value) per row of a JSON Lines file, or per item of a .json holding one array."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text ({e.reason})") from None
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        return [(f"item {i}", v) for i, v in enumerate(items, 1)]
    rows = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit inside a string
        if line.strip():
            try:
                rows.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n}: invalid JSON: {e.msg} (column {e.colno})") from None
    return rows


def _read_parquet(path: Path) -> list[tuple[str, object]]:
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    return [(f"row {i}", r) for i, r in enumerate(table.to_dict("records"), 1)]


def check_rows(where: str, located: list[tuple[str, object]]) -> list[dict]:
    """The rows, once every one is an object with a problem, a type and a known level.

    A missing solution is not an error here: that row is dropped and logged by ``to_records``.
    """
    if not located:
        raise DataError(f"{where}: no rows (the file is empty)")
    fields = set()
    for loc, row in located:
        if not isinstance(row, dict):
            raise DataError(f"{where}: {loc}: expected a JSON object, got {type(row).__name__}")
        fields |= row.keys()
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        raise DataError(f"{where} lacks the field(s) {missing}; it has {sorted(fields)}")
    for loc, row in located:
        for f in ("problem", "type", "level"):
            if _missing(row.get(f)):
                raise DataError(f"{where}: {loc}: field '{f}' is missing or null")
        if row["level"] not in LEVELS:
            raise DataError(f"{where}: {loc}: level {row['level']!r} is not one of {', '.join(LEVELS)}")
    return [row for _, row in located]


def load_rows(source: dict, split: str) -> list[dict]:
    """Rows of one split from ``{"path": file}`` (jsonl/json/parquet) or ``{"hub": id, ...}``.

    Local files are read directly (a parser's error is turned into file and line); the hub
    goes through ``datasets.load_dataset``.
    """
    if "path" in source and not Path(source["path"]).is_file():
        raise FileNotFoundError(f"{split} data file not found: {source['path']}")
    return check_rows(describe(source), read_rows(source))


def drop_reason(solution) -> str | None:
    """Why a row has no gold answer; None when it has one."""
    if _missing(solution):
        return "no solution"
    if not has_box(solution):
        return "the solution has no \\boxed{} answer"
    return None if last_boxed(solution) else "the solution's last \\boxed{} is empty or unclosed"


def to_records(rows: list[dict], split: str) -> tuple[list[dict], list[dict]]:
    """(records with an extractable gold, dropped rows with their ``reason`` and 1-based
    ``row``); ids keep the 0-based source row number."""
    kept, dropped = [], []
    for i, row in enumerate(rows):
        solution = row.get("solution")
        reason = drop_reason(solution)
        rec = {"id": f"{split}-{i:05d}", "benchmark": MATH, "subject": row["type"], "level": row["level"],
               "problem": row["problem"], "solution": solution, "answer": None if reason else last_boxed(solution)}
        if reason:
            dropped.append(rec | {"reason": reason, "row": i + 1})
        else:
            kept.append(rec)
    return kept, dropped


def benchmark_source(entry: dict) -> dict:
    """``load_rows``-style source of one extra test set of the config's ``benchmarks``."""
    if "local" in entry:
        return {"path": entry["local"]}
    hub = entry["hub"]
    return {"hub": hub["id"], "config": hub.get("config"), "split": hub.get("split", "test"),
            "revision": hub.get("revision")}


def read_rows(source: dict) -> list[tuple[str, object]]:
    """(location, row) of a local file or a hub split, unchecked."""
    if "path" in source:
        path = Path(source["path"])
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        read = {".jsonl": _read_json, ".json": _read_json, ".parquet": _read_parquet}.get(path.suffix)
        if read is None:
            raise DataError(f"{path}: expected a .jsonl, .json or .parquet file")
        return read(path)
    from datasets import load_dataset

    ds = load_dataset(source["hub"], source.get("config"), split=source["split"], revision=source.get("revision"))
    return [(f"row {i}", r) for i, r in enumerate(ds.to_list(), 1)]


def gold_drop_reason(gold, timeout_s: int) -> str | None:
    """Why a gold answer cannot grade anything (math-verify cannot parse it); None when it can.
    The gold graded against itself in a box, as a response giving it would be."""
    from nsr_study.grading import grade_with_status

    if _missing(gold) or not str(gold).strip():
        return "no gold answer"
    score, status = grade_with_status("\\boxed{" + str(gold) + "}", str(gold), timeout_s)
    return None if status == "ok" and score == 1.0 else f"math-verify cannot use the gold {str(gold)!r} ({status})"


def _level(value) -> str | None:
    """A MATH-style level string from a set's own level ("Level 3" or 3), None where it has none."""
    if _missing(value):
        return None
    return value if isinstance(value, str) else f"Level {int(value)}"


def benchmark_records(name: str, where: str, located: list[tuple[str, object]], gold: str, timeout_s: int
                      ) -> tuple[list[dict], list[dict]]:
    """(records, dropped rows with their ``reason`` and 1-based ``row``) of one extra test set,
    read whole. ``gold``: "answer" (the field is the answer) or "solution" (its last
    ``\\boxed{}``). Every gold must parse with math-verify, since an answer-only set has no
    solution whose box vouches for it. Competition sets have no level or subject: None, and
    the breakdown says so; a set's own ``level`` and ``type``/``subject`` are kept."""
    if not located:
        raise DataError(f"{where}: no rows (the file is empty)")
    kept, dropped = [], []
    for i, (loc, row) in enumerate(located):
        if not isinstance(row, dict):
            raise DataError(f"{where}: {loc}: expected a JSON object, got {type(row).__name__}")
        for f in ("problem", gold):
            if f not in row:
                raise DataError(f"{where}: {loc}: field '{f}' is missing (benchmark {name}, gold: {gold}); "
                                f"it has {sorted(row)}")
        if _missing(row["problem"]):
            raise DataError(f"{where}: {loc}: field 'problem' is null")
        solution = row.get("solution")
        reason = drop_reason(solution) if gold == "solution" else None
        answer = (last_boxed(solution) if reason is None else None) if gold == "solution" else row["answer"]
        reason = reason or gold_drop_reason(answer, timeout_s)
        subject = row.get("type", row.get("subject"))
        rec = {"id": f"{name}-{i:05d}", "benchmark": name, "subject": None if _missing(subject) else subject,
               "level": _level(row.get("level")), "problem": row["problem"],
               "solution": None if _missing(solution) else solution, "answer": None if reason else str(answer)}
        if reason:
            dropped.append(rec | {"reason": reason, "row": i + 1})
        else:
            kept.append(rec)
    if not kept:
        raise DataError(f"{where}: benchmark {name} has no row with a usable gold answer ({len(located)} rows)")
    return kept, dropped


def _stratum(rec: dict) -> tuple[str, str]:
    return rec["subject"], rec["level"]


def sample_split(records: list[dict], fraction: float, seed: int) -> list[dict]:
    """Stratified sample by (subject, level); every non-empty stratum keeps >= 1 row."""
    idx = stratified_sample([_stratum(r) for r in records], fraction, seed)
    return [records[i] for i in idx]


def carve_val(train: list[dict], val_size: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Split a stratified validation subset of ``val_size`` rows off the sampled train."""
    if not 0 < val_size < len(train):
        raise DataError(f"data.val_size = {val_size} leaves no training rows: the sampled train has {len(train)} "
                        f"rows; set data.val_size to at most {len(train) - 1} or raise data.train_fraction")
    # A different stream than the train draw, so val is not the head of each stratum.
    idx = set(stratified_sample([_stratum(r) for r in train], val_size / len(train), seed + 1, min_per_stratum=0))
    val = [r for i, r in enumerate(train) if i in idx]
    return [r for i, r in enumerate(train) if i not in idx], val


def strata_table(split: str, records: list[dict], dropped: list[dict], sampled: list[dict],
                 fraction: float, val: list[dict] = ()) -> pd.DataFrame:
    """Per-stratum source vs sample counts and proportions for one split."""
    import pandas as pd

    def counts(recs) -> Counter:
        return Counter(_stratum(r) for r in recs)

    src, drop, smp, vals = counts(records), counts(dropped), counts(sampled), counts(val)
    keys = sorted(set(src) | set(drop))
    df = pd.DataFrame({
        "split": split,
        "subject": [k[0] for k in keys],
        "level": [k[1] for k in keys],
        "source_rows": [src[k] for k in keys],
        "dropped_no_gold": [drop[k] for k in keys],
        "sampled_rows": [smp[k] for k in keys],
        "val_rows": [vals[k] for k in keys],
    })
    df["expected_rows"] = fraction * df["source_rows"]
    df["source_prop"] = df["source_rows"] / df["source_rows"].sum()
    df["sampled_prop"] = df["sampled_rows"] / df["sampled_rows"].sum()
    return df


def math_source(hub: dict | None, files, split: str) -> dict:
    """Where MATH's ``split`` comes from: the hub (config ``data.hub``) or the rule's input file."""
    if hub:
        return {"hub": hub["id"], "config": hub["config"], "revision": hub["revision"], "split": hub[f"{split}_split"]}
    return {"path": files[split]}


def sampling_summary(split: str, table: pd.DataFrame) -> str:
    """One line on a split's sampling (``prepare_split``'s table) for the rule's log."""
    return (f"{split}: {table['source_rows'].sum() + table['dropped_no_gold'].sum()} source rows, dropped "
            f"{table['dropped_no_gold'].sum()} without a gold answer (reasons above), sampled "
            f"{table['sampled_rows'].sum()} over {len(table)} strata (max |rows - exact share| = "
            f"{(table['sampled_rows'] - table['expected_rows']).abs().max():.2f})")


def prepare_split(split: str, rows: list[dict], fraction: float, seed: int, val_size: int | None = None,
                  where: str | None = None) -> tuple[dict[str, list[dict]], pd.DataFrame, list[dict]]:
    """One source split's records ({"train", "val"} or {"test"}: the validation subset is carved
    from the train sample, ``val_size`` rows), its strata table and its dropped rows (see
    ``to_records``); ``where`` names the source in errors. Each split alone, so the rules that
    prepare the test sets never rewrite the training data (workflow/rules/data.smk)."""
    records, dropped = to_records(rows, split)
    if not records:
        raise DataError(f"{where or split}: no row has a \\boxed{{}} answer in its solution ({len(rows)} rows)")
    sampled = sample_split(records, fraction, seed)
    if split == "train":
        train, val = carve_val(sampled, val_size, seed)
        return {"train": train, "val": val}, strata_table(split, records, dropped, sampled, fraction, val), dropped
    return {split: sampled}, strata_table(split, records, dropped, sampled, fraction), dropped


def sample_math(hub: dict | None, files, split: str, fraction: float, seed: int, val_size: int | None = None,
                log=None) -> tuple[dict[str, list[dict]], pd.DataFrame, list[dict], str]:
    """MATH's ``split`` read from ``math_source`` and sampled by ``prepare_split``: the first step
    of both rules prepare_data and prepare_test. Unrated and dropped rows are warnings on
    ``log`` (None: silent, for a split drawn again only for its strata table). Returns
    (splits, strata table, dropped rows, where the rows came from)."""
    source = math_source(hub, files, split)
    rows, where = load_rows(source, split), describe(source)
    unrated = [i for i, r in enumerate(rows, 1) if r["level"] == UNRATED_LEVEL]
    if log and unrated:
        log.warning("%s: rows %s are %r (unrated in MATH): kept as a stratum of their own", where, unrated,
                    UNRATED_LEVEL)
    splits, table, dropped = prepare_split(split, rows, fraction, seed, val_size, where)
    if log:
        for rec in dropped:
            log.warning("%s: row %d (%s) dropped: %s", where, rec["row"], rec["id"], rec["reason"])
        log.info(sampling_summary(split, table))
    return splits, table, dropped, where


def prepare(train_rows: list[dict], test_rows: list[dict], train_fraction: float, test_fraction: float,
            val_size: int, seed: int, where: dict[str, str] | None = None
            ) -> tuple[dict[str, list[dict]], pd.DataFrame, dict[str, list[dict]]]:
    """Records for train/val/test, the strata summary table and each split's dropped rows
    (``prepare_split`` of both splits); ``where`` names each split's source in errors."""
    import pandas as pd

    where = where or {}
    train, train_table, train_dropped = prepare_split("train", train_rows, train_fraction, seed, val_size,
                                                      where.get("train"))
    test, test_table, test_dropped = prepare_split("test", test_rows, test_fraction, seed, where=where.get("test"))
    return train | test, pd.concat([train_table, test_table], ignore_index=True), {"train": train_dropped,
                                                                                   "test": test_dropped}


def write_jsonl(records: list[dict], path: str | Path, fields=RECORD_FIELDS) -> None:
    """One JSON object per line; ``fields`` fixes the key order (None: keep the records' own)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r if fields is None else {k: r[k] for k in fields}, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_strata(table: pd.DataFrame, path: str | Path) -> None:
    """Source vs sample proportion per stratum (one panel per split); points on y = x are exact."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(table["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        t = table[table["split"] == split]
        top = max(t["source_prop"].max(), t["sampled_prop"].max()) * 1.1
        ax.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="exact proportion")
        for subject, g in t.groupby("subject"):
            ax.scatter(g["source_prop"], g["sampled_prop"], s=18, label=subject)
        dev = (t["sampled_rows"] - t["expected_rows"]).abs().max()
        ax.set(title=f"{split}: {t['sampled_rows'].sum()} of {t['source_rows'].sum()} rows "
                     f"(max |n - share| = {dev:.2f})",
               xlabel="share of source", ylabel="share of sample", xlim=(0, top), ylim=(0, top))
        ax.title.set_fontsize(9)
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.suptitle("Strata (subject × level): source vs stratified sample", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

