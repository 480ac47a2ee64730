"""The data stage on the real MATH train set (from ../shared) and on synthetic data."""

import pandas as pd
import pytest

from nsr_study import data
from nsr_study.answers import last_boxed
from nsr_study.synthetic import generate


@pytest.fixture(scope="module")
def prepared(math_dir):
    rows = data.load_rows({"path": math_dir / "train.jsonl"}, "train")
    test_rows = data.load_rows({"path": math_dir / "math500.jsonl"}, "test")
    return rows, test_rows, data.prepare(rows, test_rows, 0.25, 0.25, 200, seed=0)


def test_every_stratum_within_one_of_its_share(prepared):
    rows, _, (_, table) = prepared
    train = table[table["split"] == "train"]
    assert len(train) == 36  # 7 subjects x 5 levels + Geometry "Level ?"
    assert (train["sampled_rows"] - 0.25 * train["source_rows"]).abs().max() <= 1
    assert (train["sampled_rows"] >= 1).all()
    assert train["sampled_rows"].sum() == round(0.25 * train["source_rows"].sum())


def test_empty_golds_dropped_and_counted(prepared):
    rows, _, (splits, table) = prepared
    # rows 5341 and 5343 literally end in \boxed{} (SOURCE.md); nothing else lacks a gold
    assert table.loc[table["split"] == "train", "dropped_no_gold"].sum() == 2
    assert [i for i, r in enumerate(rows) if not last_boxed(r["solution"])] == [5341, 5343]
    for split in splits.values():
        assert all(r["answer"] for r in split)


def test_val_is_carved_out_of_train(prepared):
    _, _, (splits, table) = prepared
    train_ids = {r["id"] for r in splits["train"]}
    val_ids = {r["id"] for r in splits["val"]}
    assert len(val_ids) == 200 and not train_ids & val_ids
    assert len(train_ids) + len(val_ids) == table.loc[table["split"] == "train", "sampled_rows"].sum()
    assert table.loc[table["split"] == "train", "val_rows"].sum() == 200


def test_same_seed_same_rows_other_seed_other_rows(prepared):
    rows, test_rows, (splits, _) = prepared
    again, _ = data.prepare(rows, test_rows, 0.25, 0.25, 200, seed=0)
    other, _ = data.prepare(rows, test_rows, 0.25, 0.25, 200, seed=1)
    assert again == splits
    assert [r["id"] for r in other["train"]] != [r["id"] for r in splits["train"]]


def test_records_keep_source_fields(prepared):
    rows, _, (splits, _) = prepared
    rec = splits["train"][0]
    src = rows[int(rec["id"].split("-")[1])]
    assert (rec["problem"], rec["solution"], rec["subject"], rec["level"]) == (
        src["problem"], src["solution"], src["type"], src["level"])
    assert rec["answer"] == last_boxed(src["solution"])


def test_load_rows_names_missing_fields_and_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1", "solution": "\\\\boxed{2}"}\n')
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['level', 'type'\]"):
        data.load_rows({"path": bad}, "train")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        data.load_rows({"path": tmp_path / "nope.jsonl"}, "train")


def test_parquet_and_jsonl_load_the_same(tmp_path):
    train, _ = generate(40, 0, seed=3)
    data.write_jsonl(train, tmp_path / "s.jsonl", fields=None)
    pd.DataFrame(train).to_parquet(tmp_path / "s.parquet")
    assert data.load_rows({"path": tmp_path / "s.jsonl"}, "train") == data.load_rows(
        {"path": tmp_path / "s.parquet"}, "train")


def test_val_size_must_fit():
    train, test = generate(40, 20, seed=3)
    with pytest.raises(ValueError, match="data.val_size"):
        data.prepare(train, test, 0.5, 1.0, 20, seed=0)


def test_hub_branch_loads_a_dataset_folder(tmp_path):
    """The hub code path (load_dataset(id, config, split=...)) on a local dataset folder,
    which `datasets` resolves like a hub repository; offline, so no download is needed."""
    train, test = generate(30, 10, seed=2)
    data.write_jsonl(train, tmp_path / "train.jsonl", fields=None)
    data.write_jsonl(test, tmp_path / "test.jsonl", fields=None)
    rows = data.load_rows({"hub": str(tmp_path), "config": None, "split": "test"}, "test")
    assert rows == test
