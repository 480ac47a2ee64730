"""The data stage: load MATH, extract gold answers, stratified train/val/test samples.

Gold answer = content of the last balanced ``\\boxed{}``/``\\fbox{}`` of the solution (the
``answer`` column some copies carry is an uploader's extraction and is ignored). Rows
without one are dropped and counted per stratum, never kept to be graded wrong. Prompts are
not built here: the chat template belongs to the model, so it is applied at train time.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from nsr_study.answers import last_boxed
from nsr_study.stratify import stratified_sample

REQUIRED_FIELDS = ("problem", "solution", "level", "type")
RECORD_FIELDS = ("id", "subject", "level", "problem", "solution", "answer")


def load_rows(source: dict, split: str) -> list[dict]:
    """Rows of one split from ``{"path": file}`` (jsonl/json/parquet) or ``{"hub": id, ...}``.

    Both go through ``datasets.load_dataset`` so local files and the hub share one path.
    """
    from datasets import load_dataset

    if "path" in source:
        path = Path(source["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{split} data file not found: {path}")
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(path.suffix)
        if kind is None:
            raise ValueError(f"{path}: expected a .jsonl, .json or .parquet file")
        ds = load_dataset(kind, data_files=str(path), split="train")
        where = str(path)
    else:
        ds = load_dataset(source["hub"], source.get("config"), split=source["split"], revision=source.get("revision"))
        where = f"{source['hub']} split {source['split']}"
    missing = [f for f in REQUIRED_FIELDS if f not in ds.column_names]
    if missing:
        raise ValueError(f"{where} lacks the field(s) {missing}; it has {ds.column_names}")
    return ds.to_list()


def to_records(rows: list[dict], split: str) -> tuple[list[dict], list[dict]]:
    """(records with an extractable gold, dropped rows) — ids keep the source row number."""
    kept, dropped = [], []
    for i, row in enumerate(rows):
        gold = last_boxed(row["solution"] or "")
        rec = {"id": f"{split}-{i:05d}", "subject": row["type"], "level": row["level"],
               "problem": row["problem"], "solution": row["solution"], "answer": gold}
        (kept if gold else dropped).append(rec)
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
        raise ValueError(f"data.val_size must be between 1 and {len(train) - 1} (the sampled train has "
                         f"{len(train)} rows), got {val_size}")
    # A different stream than the train draw, so val is not the head of each stratum.
    idx = set(stratified_sample([_stratum(r) for r in train], val_size / len(train), seed + 1, min_per_stratum=0))
    val = [r for i, r in enumerate(train) if i in idx]
    return [r for i, r in enumerate(train) if i not in idx], val


def strata_table(split: str, records: list[dict], dropped: list[dict], sampled: list[dict],
                 fraction: float, val: list[dict] = ()) -> pd.DataFrame:
    """Per-stratum source vs sample counts and proportions for one split."""
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


def prepare(train_rows: list[dict], test_rows: list[dict], train_fraction: float, test_fraction: float,
            val_size: int, seed: int) -> tuple[dict[str, list[dict]], pd.DataFrame]:
    """Records for train/val/test and the strata summary table."""
    splits, tables = {}, []
    for split, rows, frac in (("train", train_rows, train_fraction), ("test", test_rows, test_fraction)):
        records, dropped = to_records(rows, split)
        if not records:
            raise ValueError(f"the {split} data has no row with a \\boxed{{}} answer ({len(rows)} rows)")
        sampled = sample_split(records, frac, seed)
        val = []
        if split == "train":
            splits["train"], val = carve_val(sampled, val_size, seed)
            splits["val"] = val
        else:
            splits["test"] = sampled
        tables.append(strata_table(split, records, dropped, sampled, frac, val))
    return splits, pd.concat(tables, ignore_index=True)


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

