"""The benchmark harness: run order, phase arithmetic, goals, summaries, and a tiny suite end to end
(real processes, the tiny model). Benchmarks measure; these tests only check that the harness runs
and writes valid records."""

from __future__ import annotations

import json

import pytest

from benchmarks.harness import (
    Goal, Process, Suite, completion_phases, goal_lines, inner_order, latency_summary, medians, schedule, summary_markdown,
)
from benchmarks.run import run_suite, update_docs
from benchmarks.suites import SUITES
from benchmarks.variants import KINDS, OFFLINE_SPECS


def test_schedule_runs_every_process_once_per_repetition_in_changing_order():
    a, b, c = (Process("k", (name,)) for name in "abc")
    plan = schedule([a, b, c], reps=3)
    names = [[p.variants[0] for rep, _, p in plan if rep == r] for r in range(3)]
    assert names == [["a", "b", "c"], ["b", "a", "c"], ["c", "a", "b"]]
    assert all(sorted(n) == ["a", "b", "c"] for n in names)
    assert len({n[0] for n in names}) == 3  # no process always first
    assert [pos for rep, pos, _ in plan if rep == 1] == [0, 1, 2]


def test_inner_order_rotates_with_the_repetition():
    assert inner_order(["x", "y", "z"], 0) == ["x", "y", "z"]
    assert inner_order(["x", "y", "z"], 1) == ["y", "z", "x"]
    assert inner_order([], 5) == []


def test_completion_phases_leave_start_up_out_of_the_steady_rate():
    phases = completion_phases(0.0, [5.0, 2.0, 4.0, 3.0], work_start=1.0)
    assert phases["items"] == 4
    assert phases["ttfr_s"] == 2.0 and phases["total_s"] == 5.0
    assert phases["fill_s"] == 1.0 and phases["rest_s"] == 3.0 and phases["steady_s"] == 4.0
    assert phases["steady_items_per_s"] == 1.0 and phases["items_per_s"] == 0.8
    assert completion_phases(0.0, []) == {"items": 0}


def test_latency_summary_gives_percentiles_with_their_count():
    s = latency_summary([0.1, 0.2, 0.3, 0.4, 0.5])
    assert s["n"] == 5 and s["p50_ms"] == pytest.approx(300) and s["max_ms"] == pytest.approx(500)
    assert s["p90_ms"] == pytest.approx(460)
    assert latency_summary([]) == {"n": 0}


def _rec(variant, rep, **fields):
    return {"suite": "t", "variant": variant, "rep": rep, "position": 0, "ok": True, **fields}


def test_goals_compare_medians_as_ratios_differences_or_values():
    records = [_rec("fast", 0, items_per_s=10.0, startup_s=30.0), _rec("fast", 1, items_per_s=12.0, startup_s=32.0),
               _rec("fast", 2, items_per_s=100.0, startup_s=31.0), _rec("slow", 0, items_per_s=4.0, startup_s=10.0),
               _rec("slow", 1, ok=False, error="boom")]
    assert medians(records)["fast"]["items_per_s"] == 12.0  # the median, not the mean
    goals = [Goal("ratio", "fast", "items_per_s", "slow", at_least=3), Goal("diff", "fast", "startup_s", "slow", at_most=15, difference=True),
             Goal("value", "fast", "items_per_s", at_least=20), Goal("report", "slow", "items_per_s"),
             Goal("absent", "nowhere", "items_per_s", "slow", at_least=1)]
    got = {g["goal"]: (g["value"], g["passed"]) for g in goal_lines(goals, records)}
    assert got == {"ratio": (3.0, True), "diff": (21.0, False), "value": (12.0, False), "report": (4.0, None), "absent": (None, None)}


def test_summary_names_the_machine_the_goals_and_the_failures():
    suite = Suite("t", (Process("k", ("fast", "slow")),), (Goal("ratio", "fast", "items_per_s", "slow", at_least=3),), "desc")
    header = {"machine": {"cpu": "CPU-X", "cores": 2, "mem_gib": 8, "gpu": None, "python": "3.11"}, "versions": {"ray": "2.60"},
              "started": "then", "finished": "now", "reps": 2}
    records = [_rec("fast", 0, items_per_s=9.0), _rec("fast", 1, items_per_s=11.0), _rec("slow", 0, items_per_s=5.0),
               _rec("slow", 1, ok=False, error="exit 1: killed")]
    text = summary_markdown(suite, records, header)
    assert "CPU-X, 2 cores" in text and "ray 2.60" in text
    assert "| fast | 2 | 10.00 (9.00-11.00) |" in text
    assert "| ratio | 2.00x | >= 3x | **missed** |" in text
    assert "slow (rep 1): exit 1: killed" in text


def test_update_docs_replaces_only_its_own_block(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nhand-written\n")
    suite = SUITES["smoke"]
    update_docs(docs, suite, "# Benchmark suite `smoke`\n\nfirst\n")
    update_docs(docs, suite, "# Benchmark suite `smoke`\n\nsecond\n")
    text = docs.read_text()
    assert "hand-written" in text and "second" in text and "first" not in text
    assert text.count("<!-- benchmarks.run:smoke -->") == 1 and "## Benchmark suite `smoke`" in text


def test_every_suite_names_known_kinds_variants_and_goals():
    for suite in SUITES.values():
        variants = [v for p in suite.processes for v in p.variants]
        assert len(variants) == len(set(variants)), suite.name
        for process in suite.processes:
            assert process.kind in KINDS
            if process.kind == "vllm_offline":
                assert all(v.split(".", 1)[1] in OFFLINE_SPECS for v in process.variants)
        for goal in suite.goals:
            assert goal.variant in variants and (goal.baseline is None or goal.baseline in variants), (suite.name, goal.name)


@pytest.mark.slow
def test_a_tiny_suite_runs_end_to_end_and_writes_valid_records(tmp_path):
    records = run_suite(SUITES["smoke"], 2, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert lines == records and len(lines) == 4
    assert sorted((r["variant"], r["rep"]) for r in lines) == [("hf.a", 0), ("hf.a", 1), ("hf.b", 0), ("hf.b", 1)]
    for r in lines:
        assert r["ok"] and r["suite"] == "smoke" and r["kind"] == "transformers_loop"
        assert r["items"] == 2 and r["tokens"]["output"] == 8  # exactly 4 new tokens per item
        assert 0 < r["ttfr_s"] <= r["total_s"] and r["steady_items_per_s"] > 0 and r["startup_s"] > 0
    order = [r["variant"] for r in lines]
    assert order[:2] != order[2:]  # the variants sharing the process swap places
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["reps"] == 2 and run["machine"]["cores"] and "torch" in run["versions"] and run["finished"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| hf.a | 2 |" in summary and "**pass**" in summary
    assert (tmp_path / "phases.png").stat().st_size > 0


def test_a_failed_measurement_is_recorded_and_the_run_goes_on(tmp_path):
    suite = Suite("broken", (Process("transformers_loop", ("hf.x",), {"model": "/nonexistent/model"}, timeout_s=120),), ())
    records = run_suite(suite, 1, tmp_path)
    assert len(records) == 1 and records[0]["ok"] is False and "exit" in records[0]["error"]
    assert "hf.x (rep 0)" in (tmp_path / "summary.md").read_text()
