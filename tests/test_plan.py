"""The study's plan against values computed by hand: the rates (nsr_study.rates), the cost model
(nsr_study.cost), the wall-clock schedule (nsr_study.schedule) and the command (nsr_study.plan)."""

import pytest
import yaml

from conftest import REPO
from nsr_study.config import load_config
from nsr_study.cost import (UNMEASURED_MIN, count_test_problems, decode_step, disk_bytes, eval_shards,
                            evaluate_seconds, generate_calls, generate_seconds, rule_minutes, shard_count, study_rows,
                            train_seconds, validation_count)
from nsr_study.plan import main
from nsr_study.rates import THROUGHPUT as STORED
from nsr_study.rates import PlanError, Rates, find_rates, load_throughput, rates_from
from nsr_study.schedule import Job, chains, list_schedule, schedule_bounds, study_jobs

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"


def entry(model: str, scale: float) -> dict:
    """A measurement: batch 8, prompts of 2 and 10 new tokens (96 tokens), so the rates are
    0.1 s per decoding step, 0.01 s per token of log-probs, 0.1 s per token of update (× scale)."""
    return dict(card="X", backend="hf", models=[f"org/{model}"], software="s", source=f"bench {model}", batch=8,
                prompt_tokens=2, new_tokens=10, seconds=dict(rollout=1.0 * scale, logprob=0.96 * scale, update=9.6 * scale))


THROUGHPUT = {"grading": {"answers_per_s_per_worker": 8, "source": "g"}, "generation": [entry("a", 1), entry("b", 2)]}


def test_rates_from_a_measurement_by_hand():
    r = rates_from(dict(entry("a", 1), seconds=dict(rollout=10.0, logprob=0.6, update=2.2), batch=64,
                        prompt_tokens=200, new_tokens=512))
    assert r.decode_step_s == 10.0 / 512 and r.decode_batch == 64 and r.prompt_tokens == 200
    assert r.forward_s_per_token == pytest.approx(0.6 / (64 * 712))
    assert r.update_s_per_token == pytest.approx(2.2 / (64 * 712))


def test_each_call_is_priced_from_the_smallest_measured_call_covering_it_by_hand():
    """Measured: 64 × 512 at 0.02 s a step (training) and 256 × 1024 at 0.03 s (evaluation).
    A call of ≤ 64 sequences and ≤ 512 tokens takes the first; more sequences or tokens, the
    second; 512 sequences, the second × 2; with only the training call, a 1,024-token call of
    64 takes its step (measured shorter) and one of 256 four of them."""
    step = dict(card="X", backend="hf", models=["org/a"], software="s", source="t", date="2026-12-04", batch=64,
                prompt_tokens=200, new_tokens=512, seconds=dict(rollout=10.24, logprob=1.0, update=1.0))
    call = step | dict(source="e", batch=256, new_tokens=1024, seconds=30.72)
    r = rates_from(step, [call])
    assert r.decoding == ((64, 512, pytest.approx(0.02)), (256, 1024, pytest.approx(0.03)))
    assert r.source == "X, hf, s, measured 2026-12-04: t\nX, hf, s, measured 2026-12-04: e"
    assert decode_step(r, 32, 512)[:2] == (pytest.approx(0.02), r.decoding[0])
    for sequences, tokens in ((64, 513), (65, 100), (256, 1024)):
        assert decode_step(r, sequences, tokens) == (pytest.approx(0.03), r.decoding[1], False)
    assert decode_step(r, 512, 1024) == (pytest.approx(0.06), r.decoding[1], True)
    assert generate_seconds(300, 1, 256, 1024, r) == pytest.approx(1024 * 0.03 * 2)  # calls of 256 and 44
    alone = rates_from(step)
    assert decode_step(alone, 64, 1024) == (pytest.approx(0.02), (64, 512, pytest.approx(0.02)), False)
    assert decode_step(alone, 256, 1024)[0] == pytest.approx(0.08) and decode_step(alone, 256, 1024)[2]
    throughput = {"generation": [step, step | dict(backend="hf-compiled", seconds=dict(rollout=1.024, logprob=1.0,
                                                                                       update=1.0))],
                  "decoding": [call, call | dict(models=["org/b"])]}
    assert find_rates(throughput, "X", "hf", "org/a").decoding == r.decoding  # org/b's call is not a's
    assert find_rates(throughput, "X", "hf-compiled", "org/a").decoding == ((64, 512, pytest.approx(0.002)),)


def test_hf_compiled_jobs_take_the_compiled_rates():
    """With train.hf_compiled every job takes the hf-compiled entries (here twice as fast; grading
    made free so that every phase halves), and without them it is unmeasured."""
    config = grid(hf_compiled=True)
    instant = {"answers_per_s_per_worker": 1e15, "source": "g"}
    plain = {"grading": instant, "generation": THROUGHPUT["generation"]}
    compiled = {"grading": instant, "generation": [e | dict(backend="hf-compiled", seconds={
        k: v / 2 for k, v in e["seconds"].items()}) for e in THROUGHPUT["generation"]]}
    fast = {(r.rule, r.model): r.hours for r in study_rows(config, 6, compiled, "X")}
    slow = {(r.rule, r.model): r.hours for r in study_rows(grid(), 6, plain, "X")}
    assert fast == pytest.approx({k: v / 2 for k, v in slow.items()})
    assert all(r.hours is None for r in study_rows(config, 6, plain, "X"))


def test_generate_calls_follow_the_hf_backend_chunking():
    assert generate_calls(32, 2, 256) == [64]
    assert generate_calls(1250, 1, 256) == [256] * 4 + [226]
    assert generate_calls(3, 256, 256) == [256] * 3
    assert generate_calls(3, 512, 256) == [512] * 3  # at least one prompt per call
    assert generate_calls(5, 2, 4) == [4, 4, 2]


def test_validation_count_by_hand():
    assert validation_count(80, 10) == 9  # steps 0, 10, …, 80
    assert validation_count(7, 5) == 3  # 0, 5 and the last, 7
    assert validation_count(1, 1) == 2


RATES = Rates(decode_step_s=0.01, decode_batch=8, forward_s_per_token=1e-4, update_s_per_token=1e-3,
              prompt_tokens=10, source="hand")
TRAIN = dict(steps=4, prompts_per_step=8, rollouts_per_prompt=2, max_new_tokens=20, generation_batch_size=8,
             kl_coef=0.0, val_every=2, val_samples=4)


def test_train_seconds_by_hand():
    """Per step: 8 prompts × 2 at 4 prompts per call = 2 calls × 20 steps × 0.01 s = 0.4 s;
    16 answers at 2 workers × 8/s = 1 s; 16 × (10 + 20) = 480 tokens → 0.048 s log-probs and
    0.48 s update. Validation (steps 0, 2, 4): greedy, 5 prompts in 1 call = 0.2 s + 5/16 s
    grading; sampled, 5 prompts × 4 samples at 2 prompts per call = 3 calls (0.6 s) + 20/16 s."""
    s = train_seconds(TRAIN, val_size=5, workers=2, grade_rate=8, rates=RATES)
    expected = dict(rollout=1.6, grading=4.0, logprob=0.192, update=1.92, validation=3 * (0.2 + 5 / 16 + 0.6 + 20 / 16))
    assert s == pytest.approx(expected)
    assert train_seconds(TRAIN | dict(kl_coef=0.1), 5, 2, 8, RATES)["logprob"] == pytest.approx(0.384)  # + reference


def test_evaluate_seconds_by_hand():
    """6 problems: greedy in 1 call (0.2 s); 4 samples each at 2 problems per call = 3 calls
    (0.6 s); entropies 6 × (10 + 20) × 1e-4 = 0.018 s; 6 × 5 answers at 8/s = 3.75 s."""
    s = evaluate_seconds(dict(n=4, max_new_tokens=20), problems=6, generation_batch_size=8, workers=1, grade_rate=8,
                         rates=RATES)
    assert s == pytest.approx(dict(greedy=0.2, sampled=0.6, entropy=0.018, grading=3.75))


def grid(**train):
    return {"models": [{"name": "a", "id": "org/a", "gpus": 1}, {"name": "b", "id": "org/b", "gpus": 1}],
            "objectives": ["NSR"], "seeds": [0],
            "data": {"val_size": 4}, "benchmarks": [{"name": "math"}], "grading": {"workers": 1},
            "train": dict(steps=2, prompts_per_step=4, rollouts_per_prompt=2, max_new_tokens=10, generation_batch_size=8,
                          kl_coef=0.0, val_every=2, val_samples=1, backend="hf", per_objective={}) | train,
            "evaluate": {"n": 4, "max_new_tokens": 10, "backend": "hf", "shard_size": 64}}


def test_two_model_grid_by_hand():
    """2 models × 1 objective × 1 seed, 6 test problems; model b is twice as slow as a.
    train a per step: 1 call × 10 × 0.1 s = 1 s rollout, 8 answers / 8 per s = 1 s, 8 × 12
    tokens → 0.96 s log-probs and 9.6 s update: 12.56 s × 2 steps, plus validation at steps 0
    and 2, each greedy and one sample per problem, (1 s + 0.5 s grading) × 2: 31.12 s.
    b: (2 + 1 + 1.92 + 19.2) × 2 + (2 + 0.5) × 2 × 2 = 58.24 s. Evaluation a: greedy 1 s, 4 samples at 2 problems per call 3 s, entropies
    6 × 12 × 0.01 = 0.72 s, 30 answers 3.75 s = 8.47 s; b: 2 + 6 + 1.44 + 3.75 = 13.19 s."""
    rows = study_rows(grid(), problems=6, throughput=THROUGHPUT, card="X")
    seconds = {(r.rule, r.model): r.hours * 3600 for r in rows}
    assert seconds == pytest.approx({("train", "a"): 31.12, ("train", "b"): 58.24, ("evaluate_base", "a"): 8.47,
                                     ("evaluate_base", "b"): 13.19, ("evaluate_cell", "a"): 8.47,
                                     ("evaluate_cell", "b"): 13.19})
    assert sum(seconds.values()) == pytest.approx(132.68)
    three_seeds = study_rows(grid() | {"seeds": [0, 1, 2]}, 6, THROUGHPUT, "X")
    assert [r.jobs for r in three_seeds] == [3, 3, 1, 1, 3, 3]


def test_chains_by_hand():
    """A (2 s) then B (3 s); C (4 s) alone: from A's start 5 s remain at least."""
    assert chains([Job(2), Job(3, (0,)), Job(4)]) == [5, 3, 4]


# Two cells (train 1 s, then its evaluation 5 s) and a base evaluation (4 s): the study's DAG.
CELLS = [Job(1), Job(1), Job(5, (0,)), Job(5, (1,)), Job(4)]


def test_list_schedule_by_hand():
    """2 GPUs: both trains first (their chains, 6 s, are the longest), at 1 s both evaluations
    (5 s, to 6 s), then the base evaluation, 6 to 10 s. (The best order, 9 s, puts the base
    evaluation beside the two trains; the rule is a heuristic, inside its bounds.) One GPU runs
    everything back to back; a job that must wait leaves the other GPU idle."""
    assert list_schedule(CELLS, 2) == 10
    assert schedule_bounds(CELLS, 2) == (8, 11)  # max(16 / 2, 6); 16 / 2 + (1 − 1/2) × 6
    assert list_schedule(CELLS, 1) == 16 and schedule_bounds(CELLS, 1) == (16, 16)
    assert list_schedule(CELLS, 5) == 6  # the longest chain
    assert list_schedule([Job(2), Job(3, (0,))], 2) == 5
    assert list_schedule([], 3) == 0


def test_jobs_on_several_gpus_wait_for_that_many_by_hand():
    """4 GPUs: a 4-GPU train (2 s) then its 4-GPU evaluation (1 s), and two 1-GPU jobs (3 s).
    The wide train's chain (3 s) is the longest, so it starts first on all four GPUs; at 2 s
    the evaluation (chain 1 s) loses to the 3 s jobs, which take two GPUs to 5 s; the
    evaluation waits for four free GPUs, 5 to 6 s. The lower bound is max(GPU-s 4·2 + 4·1 +
    3 + 3 = 18 / 4, chain 3) = 4.5 s; no upper bound for wide jobs. A job wider than the node
    is refused."""
    jobs = [Job(2, gpus=4), Job(1, (0,), gpus=4), Job(3), Job(3)]
    assert list_schedule(jobs, 4) == 6
    assert schedule_bounds(jobs, 4) == (4.5, None)
    assert list_schedule(jobs, 8) == 3  # everything at once: the wide chain 2 + 1 beside the 3 s jobs
    with pytest.raises(PlanError, match="needs 4 GPUs at once, the node has 2"):
        list_schedule(jobs, 2)


def test_an_n_gpu_model_costs_n_gpu_hours_per_job():
    one, four = (study_rows(grid() | {"models": [{"name": "a", "id": "org/a", "gpus": g}]}, 6, THROUGHPUT, "X")
                 for g in (1, 4))
    for r1, r4 in zip(one, four):
        assert r4.job_hours == pytest.approx(4 * r1.job_hours) and r4.gpus == 4
    assert [j.gpus for j in study_jobs(four)] == [4, 4, 4]


def test_study_jobs_follow_the_dag():
    """Per model: a train job per cell, each cell's evaluation after its own train job, one base
    evaluation after none; seconds from the rows (two-model grid, two seeds)."""
    rows = study_rows(grid() | {"seeds": [0, 1]}, problems=6, throughput=THROUGHPUT, card="X")
    jobs = study_jobs(rows)
    assert [j.after for j in jobs] == [(), (), (0,), (1,), (), (), (), (5,), (6,), ()]
    assert [j.seconds for j in jobs] == pytest.approx([31.12] * 2 + [8.47] * 3 + [58.24] * 2 + [13.19] * 3)
    assert list_schedule(jobs, 1) == pytest.approx(sum(r.hours for r in rows) * 3600)


def test_evaluations_in_shards_by_hand():
    """6 problems in shards of ≤ 4: 2 shards of 3, each a job. Model a's shard: greedy 1 call
    (1 s), 4 samples at 2 problems per call = 2 calls (2 s), entropies 3 × 12 × 0.01 = 0.36 s,
    15 answers / 8 per s = 1.875 s: 5.235 s. Each shard of the cell waits for its train job."""
    assert [shard_count(p, 4) for p in (1, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]
    config = grid() | {"evaluate": grid()["evaluate"] | {"shard_size": 4}}
    rows = {(r.rule, r.model): r for r in study_rows(config, 6, THROUGHPUT, "X")}
    cell = rows["evaluate_cell", "a"]
    assert (cell.jobs, cell.shards, rows["evaluate_base", "a"].jobs) == (2, 2, 2)
    assert cell.job_hours * 3600 == pytest.approx(5.235)
    jobs = study_jobs(list(rows.values()))
    assert [j.after for j in jobs] == [(), (0,), (0,), (), (), (), (5,), (5,), (), ()]
    assert [j.seconds for j in jobs][:5] == pytest.approx([31.12, 5.235, 5.235, 5.235, 5.235])


def test_workflow_shards_and_slurm_runtimes_come_from_the_plan():
    """The synthetic demo data: 100 × 0.2 = 20 test problems in shards of 10 → 2; a SLURM
    runtime is the plan's longest job of that rule and model × 1.5 + 15 min (train a: 31.12 s
    → 16 min; evaluation shard a: greedy 2 calls 2 s + samples 5 calls 5 s + 10 × 12 × 0.01 s
    + 50 answers / 8 per s = 14.45 s → 16 min), and an unmeasured model gets UNMEASURED_MIN."""
    config = grid() | {"data": {"source": "synthetic", "synthetic": {"n_test": 100}, "test_fraction": 0.2, "val_size": 4},
                       "evaluate": grid()["evaluate"] | {"shard_size": 10}}
    assert eval_shards(config) == 2
    assert eval_shards(config | {"data": {"source": "hub", "hub": {"id": "org/x"}, "test_fraction": 1}}) == 1
    minutes = rule_minutes(config | {"models": config["models"] + [{"name": "c", "id": "org/c", "gpus": 1}]}, THROUGHPUT)
    assert minutes["train"] == {"a": 16, "b": 17, "c": UNMEASURED_MIN}  # b: 58.24 s × 1.5 = 1.46 min + 15
    assert minutes["evaluate_cell"]["a"] == minutes["evaluate_base"]["a"] == 16


def test_disk_by_hand():
    """2 cells of 10 parameters and 1 of 100, bf16 policies: 2 × 10 × 2 + 100 × 2 = 240 bytes;
    checkpoints 12 bytes a parameter: 240 + 1,200 = 1,440. Two GPUs: the two largest cells (100
    and 10 parameters) write at once, one more checkpoint each when kept (1,320 bytes), two
    each while writing when not (the previous one is deleted only after)."""
    d = disk_bytes([(2, 10), (1, 100)], "bfloat16", keep_checkpoint=True, gpus=2)
    assert d == {"policies": 240, "checkpoints": 1440, "at_rest": 1680, "peak": 1680 + 1320}
    d = disk_bytes([(2, 10), (1, 100)], "bfloat16", keep_checkpoint=False, gpus=2)
    assert d == {"policies": 240, "checkpoints": 0, "at_rest": 240, "peak": 240 + 2 * 1320}
    assert disk_bytes([(1, 10)], "float32", True, gpus=8)["at_rest"] == 40 + 120


def test_an_objectives_own_kl_loss_costs_only_its_cells():
    """GRPO with kl_coef 0.5 beside PSR and NSR: per model one train row of GRPO's 2 seeds, whose
    log-probs take twice model a's 0.96 s × 2 steps (+ 1.92 s: 33.04 s), and one of PSR and NSR's
    4 cells at 31.12 s (as in the two-model grid above)."""
    config = grid(per_objective={"GRPO": {"kl_coef": 0.5}}) | {"objectives": ["GRPO", "PSR", "NSR"], "seeds": [0, 1]}
    train = [r for r in study_rows(config, 6, THROUGHPUT, "X") if r.rule == "train"]
    assert [(r.model, r.objectives, r.jobs) for r in train] == [("a", ("GRPO",), 2), ("a", ("PSR", "NSR"), 4),
                                                                 ("b", ("GRPO",), 2), ("b", ("PSR", "NSR"), 4)]
    assert train[0].job_hours * 3600 == pytest.approx(33.04) and train[1].job_hours * 3600 == pytest.approx(31.12)
    assert train[0].label == "a GRPO"


def test_unmeasured_backend_card_or_model_is_never_costed():
    for rows in (study_rows(grid(), 6, THROUGHPUT, "X", backend="vllm"), study_rows(grid(), 6, THROUGHPUT, "Y")):
        assert all(r.hours is None and "no " in r.missing for r in rows)
    rows = study_rows(grid() | {"models": [{"name": "c", "id": "org/c", "gpus": 1}]}, 6, THROUGHPUT, "X")
    assert [r.missing for r in rows][0] == "no hf measurement of org/c on X"


def test_throughput_file_errors_name_line_and_field(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(THROUGHPUT))
    bad["generation"][1]["seconds"]["update"] = -1
    del bad["generation"][0]["source"]
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(PlanError) as err:
        load_throughput(path)
    lines = str(err.value).splitlines()[1:]
    text = path.read_text().splitlines()
    assert len(lines) == 2
    missing = next(ln for ln in lines if "'source' is a required property" in ln)
    negative = next(ln for ln in lines if "generation[1].seconds.update: -1 is less than" in ln)
    assert missing.split(":")[2].strip() == "generation[0]" and text[int(missing.split(":")[1]) - 1].startswith("- ")
    assert text[int(negative.split(":")[1]) - 1].strip() == "update: -1"
    dup = yaml.safe_load(yaml.safe_dump(THROUGHPUT))
    dup["generation"][1]["models"] = ["org/a"]
    path.write_text(yaml.safe_dump(dup, sort_keys=False))
    with pytest.raises(PlanError, match=r"generation\[1\]: \('X', 'hf', 'org/a'\) is measured in generation\[0\]"):
        load_throughput(path)


def test_decoding_entries_are_checked_like_the_others(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(THROUGHPUT))
    call = dict(entry("a", 1), seconds=3.0, batch=16, date="2026-12-04")
    data["decoding"] = [call, call | dict(date="4 Dec"), call | dict(backend="hf-compiled", seconds={"rollout": 1})]
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PlanError) as err:
        load_throughput(path)
    assert "decoding[1].date: '4 Dec' does not match" in str(err.value)
    assert "decoding[2].seconds: {'rollout': 1} is not of type 'number'" in str(err.value)
    data["decoding"] = [call, call]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(PlanError, match=r"decoding\[1\]: \('X', 'hf', 'org/a', 16, 10\) is measured in decoding\[0\]"):
        load_throughput(path)


def test_the_stored_measurements_load():
    data = load_throughput(STORED)
    assert {e["card"] for e in data["generation"]} == {"H100-80GB", "H200"}
    # the H200's evaluation calls (bench/gpu_check.sh) price the 0.5B and 1.5B evaluations; 3B's was not measured
    rates = {shape: find_rates(data, "H200", "hf", f"Qwen/Qwen2.5-{shape}-Instruct") for shape in ("0.5B", "1.5B", "3B")}
    assert [(256, 1024) in {c[:2] for c in r.decoding} for r in rates.values()] == [True, True, False]


def test_test_problems_from_the_data_config(tmp_path):
    assert count_test_problems({"source": "synthetic", "synthetic": {"n_test": 500}, "test_fraction": 0.2}) == 100
    assert count_test_problems({"source": "hub", "hub": {"id": "DigitalLearningGmbH/MATH-lighteval"},
                                "test_fraction": 0.25}) == 1250
    (tmp_path / "t.jsonl").write_text('{"problem": "p"}\n' * 10)
    assert count_test_problems({"source": "local", "local": {"test": str(tmp_path / "t.jsonl")}, "test_fraction": 0.5}) == 5
    with pytest.raises(PlanError, match="data.hub.id: the test split size of org/other is unknown"):
        count_test_problems({"source": "hub", "hub": {"id": "org/other"}, "test_fraction": 0.25})


def test_config_files_overlay_as_in_snakemake():
    config = load_config([REPO / "config/config.yaml", REPO / "config/demo.yaml"], SCHEMA)
    assert [m["name"] for m in config["models"]] == ["tiny-s", "tiny-m", "tiny-l"]
    assert config["train"]["backend"] == "hf" and config["data"]["source"] == "synthetic"
    assert "generation_batch_size" in config["train"]  # schema defaults filled in


def test_command_prints_rules_and_total(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    overlay = tmp_path / "grid.yaml"
    overlay.write_text(yaml.safe_dump({"models": [{"name": "q05", "id": "Qwen/Qwen2.5-0.5B-Instruct"},
                                                  {"name": "other", "id": "org/unmeasured"}], "seeds": [0]}))
    with pytest.raises(SystemExit):  # two cards are measured: the plan does not pick one silently
        main(["--configfile", "config/config.yaml", "--configfile", str(overlay), "--backend", "hf"])
    assert "--card: choose one of ['H100-80GB', 'H200']" in capsys.readouterr().err
    main(["--configfile", "config/config.yaml", "--configfile", str(overlay), "--backend", "hf", "--card", "H100-80GB"])
    out = capsys.readouterr().out
    config = load_config([REPO / "config/config.yaml", overlay], SCHEMA)
    rows = study_rows(config, count_test_problems(config["data"]), load_throughput(STORED),
                      "H100-80GB", "hf")
    total = sum(r.hours for r in rows if r.hours is not None)
    assert total > 0 and f"total {sum(r.jobs for r in rows)} jobs {total:.1f} GPU-h" in " ".join(out.split())
    for rule in ("train", "evaluate_base", "evaluate_cell"):
        assert f"\n{rule} " in out
    assert "INCOMPLETE" in out and "no hf measurement of org/unmeasured on H100-80GB" in out
    assert f"wall-clock 1 GPU {total:.1f} h" in " ".join(out.split())
    # q05's 4 cells of 494 M parameters: 4 × 0.494 × 2 = 4 GB of policies, × 12 = 24 GB of checkpoints
    assert "disk at rest 28 GB (policies in bfloat16 4 GB, checkpoints 24 GB: train.keep_checkpoint true)" in \
        " ".join(out.split()) and "INCOMPLETE: parameters unknown for org/unmeasured" in out
    main(["--configfile", "config/config.yaml", "--configfile", str(overlay), "--backend", "hf", "--gpus", "8",
          "--card", "H100-80GB"])
    wall = list_schedule(study_jobs(rows), 8) / 3600
    low, high = (b / 3600 for b in schedule_bounds(study_jobs(rows), 8))
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("wall-clock"))
    assert f"8 GPUs {wall:.1f} h" in " ".join(line.split()) and f"{low:.1f}–{high:.1f} h" in line
    assert line.endswith("INCOMPLETE: unmeasured jobs count 0 h")
    main(["--configfile", "config/config.yaml", "--configfile", str(overlay), "--card", "H200"])  # the config's: vLLM
    assert "no vllm measurement of Qwen/Qwen2.5-0.5B-Instruct" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--configfile", "config/config.yaml", "--card", "B200"])
    assert "B200 has no measurement" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--configfile", "config/config.yaml", "--gpus", "0", "--card", "H200"])
    assert "--gpus: 0; the study needs at least one GPU" in capsys.readouterr().err


def test_the_controls_rare_set_is_counted_before_the_workflow_writes_it():
    """config/control.yaml's test set `rare` is a file the workflow writes itself: its rows come
    from data.synthetic.n_rare, so the shards are known at dry run (100 + 100 in one shard)."""
    from nsr_study.cost import count_all_test_problems

    cfg = load_config([REPO / "config" / f for f in ("config.yaml", "demo.yaml", "control.yaml")],
                      REPO / "workflow" / "schemas" / "config.schema.yaml")
    assert count_all_test_problems(cfg) == 100 + cfg["data"]["synthetic"]["n_rare"] == 200
    assert eval_shards(cfg) == 1
