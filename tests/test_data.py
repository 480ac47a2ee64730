"""The data stage on the real MATH train set (from ../shared) and on synthetic data."""

import json
import re

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
    rows, _, (_, table, _) = prepared
    train = table[table["split"] == "train"]
    assert len(train) == 36  # 7 subjects x 5 levels + Geometry "Level ?"
    assert (train["sampled_rows"] - 0.25 * train["source_rows"]).abs().max() <= 1
    assert (train["sampled_rows"] >= 1).all()
    assert train["sampled_rows"].sum() == round(0.25 * train["source_rows"].sum())


def test_empty_golds_dropped_and_counted(prepared):
    rows, _, (splits, table, dropped) = prepared
    # rows 5341 and 5343 literally end in \boxed{} (an empty gold in the source); nothing else lacks a gold
    assert table.loc[table["split"] == "train", "dropped_no_gold"].sum() == 2
    assert [i for i, r in enumerate(rows) if not last_boxed(r["solution"])] == [5341, 5343]
    assert [(r["row"], r["id"], r["reason"]) for r in dropped["train"]] == [
        (5342, "train-05341", "the solution's last \\boxed{} is empty or unclosed"),
        (5344, "train-05343", "the solution's last \\boxed{} is empty or unclosed")]
    for split in splits.values():
        assert all(r["answer"] for r in split)


def test_val_is_carved_out_of_train(prepared):
    _, _, (splits, table, _) = prepared
    train_ids = {r["id"] for r in splits["train"]}
    val_ids = {r["id"] for r in splits["val"]}
    assert len(val_ids) == 200 and not train_ids & val_ids
    assert len(train_ids) + len(val_ids) == table.loc[table["split"] == "train", "sampled_rows"].sum()
    assert table.loc[table["split"] == "train", "val_rows"].sum() == 200


def test_same_seed_same_rows_other_seed_other_rows(prepared):
    rows, test_rows, (splits, _, _) = prepared
    again, _, _ = data.prepare(rows, test_rows, 0.25, 0.25, 200, seed=0)
    other, _, _ = data.prepare(rows, test_rows, 0.25, 0.25, 200, seed=1)
    assert again == splits
    assert [r["id"] for r in other["train"]] != [r["id"] for r in splits["train"]]


def test_records_keep_source_fields(prepared):
    rows, _, (splits, _, _) = prepared
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
    with pytest.raises(data.DataError, match="data.val_size = 20 leaves no training rows: the sampled train has 20"):
        data.prepare(train, test, 0.5, 1.0, 20, seed=0)


def test_hub_branch_loads_a_dataset_folder(tmp_path):
    """The hub code path (load_dataset(id, config, split=...)) on a local dataset folder,
    which `datasets` resolves like a hub repository; offline, so no download is needed."""
    train, test = generate(30, 10, seed=2)
    data.write_jsonl(train, tmp_path / "train.jsonl", fields=None)
    data.write_jsonl(test, tmp_path / "test.jsonl", fields=None)
    rows = data.load_rows({"hub": str(tmp_path), "config": None, "split": "test"}, "test")
    assert rows == test


def _rows(n=60):
    return [{"problem": f"{i}+1", "solution": f"\\boxed{{{i + 1}}}", "level": f"Level {i % 5 + 1}",
             "type": "Algebra"} for i in range(n)]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_malformed_json_names_the_file_and_line(tmp_path):
    path = _write(tmp_path / "train.jsonl", _rows())
    lines = path.read_text().splitlines()
    lines[56] = lines[56][:30]  # line 57: a truncated object
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(data.DataError, match=rf"^{re.escape(str(path))}: line 57: invalid JSON: "):
        data.load_rows({"path": path}, "train")


def test_an_empty_file_is_named(tmp_path):
    (tmp_path / "train.jsonl").write_text("\n")
    with pytest.raises(data.DataError, match=r"train.jsonl: no rows \(the file is empty\)"):
        data.load_rows({"path": tmp_path / "train.jsonl"}, "train")


@pytest.mark.parametrize("level", ["Level 6", "level 3", "", "3"])
def test_an_unknown_level_is_refused_with_its_line(tmp_path, level):
    rows = _rows(5)
    rows[2]["level"] = level
    path = _write(tmp_path / "train.jsonl", rows)
    with pytest.raises(data.DataError, match=rf"train.jsonl: line 3: level {re.escape(repr(level))} is not one of"):
        data.load_rows({"path": path}, "train")


def test_unrated_level_is_kept_as_its_own_stratum(tmp_path):
    rows = _rows(5)
    rows[2]["level"] = "Level ?"
    assert data.load_rows({"path": _write(tmp_path / "train.jsonl", rows)}, "train") == rows


def test_a_row_without_problem_is_refused_with_its_line(tmp_path):
    rows = _rows(5)
    rows[3]["problem"] = None
    with pytest.raises(data.DataError, match=r"train.jsonl: line 4: field 'problem' is missing or null"):
        data.load_rows({"path": _write(tmp_path / "train.jsonl", rows)}, "train")


def test_rows_without_a_gold_are_dropped_with_their_reason():
    rows = _rows(4)
    del rows[0]["solution"]
    rows[1]["solution"] = "It is 2."
    rows[2]["solution"] = "So \\boxed{"
    kept, dropped = data.to_records(rows, "train")
    assert [r["id"] for r in kept] == ["train-00003"]
    assert [(r["row"], r["reason"]) for r in dropped] == [
        (1, "no solution"), (2, "the solution has no \\boxed{} answer"),
        (3, "the solution's last \\boxed{} is empty or unclosed")]


def test_parquet_with_other_column_names_is_named(tmp_path):
    pd.DataFrame({"question": ["1+1"], "answer": ["2"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(data.DataError, match=r"t.parquet lacks the field\(s\) \['problem', 'solution', 'level', "
                                             r"'type'\]; it has \['answer', 'question'\]"):
        data.load_rows({"path": tmp_path / "t.parquet"}, "train")


def test_a_split_without_any_boxed_answer_names_its_file():
    rows = [r | {"solution": "no box"} for r in _rows(10)]
    with pytest.raises(data.DataError, match=r"^/data/test.jsonl: no row has a \\boxed\{\} answer"):
        data.prepare(_rows(40), rows, 0.5, 1.0, 5, seed=0, where={"test": "/data/test.jsonl"})


def test_an_answer_only_set_keeps_every_gold_math_verify_parses_and_counts_the_rest():
    located = [(f"line {i}", row) for i, row in enumerate([
        {"problem": "p1", "answer": "27"}, {"problem": "p2", "answer": "336^\\circ"},
        {"problem": "p3", "answer": "\\frac{1}{2"}, {"problem": "p4", "answer": ""},
        {"problem": "p5", "answer": "-1", "level": 3, "subject": "Algebra"}], 1)]
    kept, dropped = data.benchmark_records("aime", "a.jsonl", located, "answer", timeout_s=5)
    assert [r["answer"] for r in kept] == ["27", "336^\\circ", "-1"]
    assert [r["id"] for r in kept] == ["aime-00000", "aime-00001", "aime-00004"]
    assert {r["benchmark"] for r in kept} == {"aime"} and (kept[0]["level"], kept[0]["subject"]) == (None, None)
    assert (kept[2]["level"], kept[2]["subject"]) == ("Level 3", "Algebra")
    assert [(d["row"], d["reason"].split(" (")[0]) for d in dropped] == [
        (3, "math-verify cannot use the gold '\\\\frac{1}{2'"), (4, "no gold answer")]
    with pytest.raises(data.DataError, match=r"a.jsonl: line 1: field 'answer' is missing \(benchmark aime"):
        data.benchmark_records("aime", "a.jsonl", [("line 1", {"problem": "p", "solution": "x"})], "answer", 5)


def test_a_solution_set_takes_the_last_box_and_the_shared_competition_sets_parse_whole():
    from conftest import REPO

    kept, dropped = data.benchmark_records(
        "m500", "hub", [("row 1", {"problem": "p", "solution": "so $\\boxed{2}$ then $\\boxed{3}$"}),
                        ("row 2", {"problem": "q", "solution": "no box"})], "solution", 5)
    assert [r["answer"] for r in kept] == ["3"] and dropped[0]["reason"] == "the solution has no \\boxed{} answer"
    for name, rows in (("aime2025", 30), ("amc23", 40)):
        path = REPO.parent / "shared" / "data" / name / "test.jsonl"
        if not path.is_file():
            pytest.skip(f"{path} not found (docs/data.md, test sets)")
        kept, dropped = data.benchmark_records(name, str(path), data.read_rows({"path": path}), "answer", 5)
        assert (len(kept), len(dropped)) == (rows, 0)
