"""Sharded evaluation: the shards of the test problems, evaluated as separate jobs and merged,
give the unsharded evaluation problem by problem (per-problem seeds, nsr_study.evaluate)."""

import json

import pytest

from conftest import demo_config, tiny_cell_dir
from nsr_study.data import read_jsonl, write_jsonl
from nsr_study.evaluate import evaluate, main, shard_rows
from nsr_study.summary import main as summary_main
from nsr_study.summary import summarize_evaluation
from nsr_study.synthetic import STRATEGY_SUBJECTS


def test_shards_are_balanced_blocks_in_table_order():
    rows = [{"id": i} for i in range(7)]
    shards = [shard_rows(rows, k, 3) for k in range(3)]
    assert [[r["id"] for r in s] for s in shards] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [r for s in shards for r in s] == rows
    with pytest.raises(ValueError, match="shard 3 of 3: shards are numbered 0 to 2"):
        shard_rows(rows, 3, 3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny Qwen2 and 8 test problems; evaluation settings of the demo at T = 1 with
    top-p, 4 samples of ≤ 12 tokens per problem, 2 problems per generate call."""
    root = tiny_cell_dir(tmp_path_factory.mktemp("evaluate"))
    records = read_jsonl(root / "val.jsonl")
    cfg = demo_config()
    t = cfg["train"]
    e = cfg["evaluate"] | {k: t[k] for k in ("micro_batch_size", "logprob_chunk", "hf_compiled")}
    e |= dict(device="cpu", dtype="float32", backend="hf", n=4, temperature=1.0, top_p=0.9, max_new_tokens=12,
              generation_batch_size=8)
    return root, records, {"evaluate": e, "prompt": cfg["prompt"], "grading": cfg["grading"] | {"workers": 1}}


def test_merged_shards_equal_the_unsharded_evaluation_problem_by_problem(tiny, tmp_path):
    """Once unsharded (in-process), once as three shard jobs and a merge through the command
    line: every problem's row (samples' correctness, lengths, truncations, grading statuses,
    greedy entropy) and the summary are equal, not merely close."""
    root, records, cfg = tiny
    facts, whole = evaluate(str(root / "model"), records, cfg["evaluate"], cfg["prompt"], cfg["grading"], seed=3)
    assert len({p["sampled_tokens"] for p in whole}) > 1  # the samples differ between problems
    test = tmp_path / "test.jsonl"
    write_jsonl(records, test)
    label = {"model": "tiny", "objective": "NSR", "seed": 3}
    config = json.dumps(cfg | {"label": label})
    shards = [tmp_path / f"shard{k}.json" for k in range(3)]
    for k, out in enumerate(shards):
        main(["--model", str(root / "model"), "--test", str(test), "--shard", f"{k}/3", "--config", config,
              "--out", str(out)])
    summary_main(["--config", config, "--metrics", str(tmp_path / "metrics.json"),
          "--problems", str(tmp_path / "problems.jsonl"), *map(str, shards)])
    merged = read_jsonl(tmp_path / "problems.jsonl")
    assert [len(json.loads(s.read_text())["problems"]) for s in shards] == [3, 3, 2]
    assert merged == whole
    summary = json.loads((tmp_path / "metrics.json").read_text())
    expected = label | summarize_evaluation(whole, [facts], cfg["evaluate"])
    same = lambda d: json.dumps({k: v for k, v in d.items() if k not in ("shards", "gpus")}, sort_keys=True)  # noqa: E731
    assert same(summary) == same(expected)  # as JSON: NaN (one problem's SE) equals itself
    assert summary["shards"] == 3 and summary["benchmarks"]["math"]["problems"] == 8


def test_rows_of_the_two_strategy_subjects_carry_each_strategy_s_share(tiny):
    """problems.jsonl's task-specific tag: a row of the positive control's subjects counts its
    samples by strategy (nsr_study.synthetic.strategy_tally); other rows have no such key."""
    root, records, cfg = tiny
    recs = [records[0] | {"subject": STRATEGY_SUBJECTS[1]}, records[1]]
    _, rows = evaluate(str(root / "model"), recs, cfg["evaluate"], cfg["prompt"], cfg["grading"], seed=3)
    tag = rows[0]["strategies"]
    assert sum(tag["used"].values()) == rows[0]["n"] and sum(tag["correct"].values()) == rows[0]["correct"]
    assert "strategies" not in rows[1]
