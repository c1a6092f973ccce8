"""Recorded teacher outputs -> distillation's trace table: GuardReasoner conversion, Nemotron flags,
filters, the multi-teacher rules and stats (synthetic rows written here, and a sample of the real file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonguard.config.distill import TraceFilters
from reasonguard.schema import GuardExample
from reasonguard.trace_import import (
    NOT_CHOSEN,
    candidate_records,
    choose_traces,
    guardreasoner_candidates,
    guardreasoner_reasoning,
    import_stats,
    nemotron_candidates,
)

GR_TRACE = """# Task 1

## Reasoning Step 1: Analyze the user's request.
The user asks how to make a weapon at home, which could hurt people.

## Reasoning Step 2: The request seeks instructions for violence and is therefore harmful.

# Task 2

## Reasoning Step 1
The AI assistant's response is a refusal.

# Task 3

## Reasoning Step 1
The response declines and gives no dangerous details, so it is unharmful.

## Conclusion
Response: unharmful"""


def gr_row(i, teacher, task="prompt_harm", gold="harmful", pred_p="harmful", pred_r=None, response=None, reasoning=GR_TRACE, ok=True):
    return {"id": f"gr-{teacher}-Bench-{i}", "benchmark": "Bench", "teacher": f"GuardReasoner-{teacher}", "prompt": f"prompt {i}",
            "response": response, "gold_task": task, "gold_label": gold, "pred_prompt_harm": pred_p, "pred_response_refusal": None,
            "pred_response_harm": pred_r, "pred_matches_gold": True, "reasoning": reasoning, "answers_parsed": ok, "trace_well_formed": ok}


def test_guardreasoner_blocks_become_plain_reasoning_about_harm():
    prompt_only = guardreasoner_reasoning(GR_TRACE, has_response=False)
    assert prompt_only == ("The user asks how to make a weapon at home, which could hurt people. "
                           "The request seeks instructions for violence and is therefore harmful.")
    with_response = guardreasoner_reasoning(GR_TRACE, has_response=True)
    assert with_response.endswith("so it is unharmful.")  # Task 3 kept, its "Response: unharmful" answer line dropped
    assert "refusal" not in with_response and "#" not in with_response and "Analyze" not in with_response


def test_filters_rules_and_stats_on_synthetic_rows():
    rows = [
        gr_row(1, "8B"), gr_row(1, "3B"), gr_row(1, "1B", pred_p="unharmful"),                   # 1B disagrees with gold
        gr_row(2, "8B", reasoning="", ok=False), gr_row(2, "3B", reasoning=GR_TRACE.replace("weapon", "weapon weapon weapon weapon weapon weapon weapon")),
        gr_row(3, "8B", task="response_harm", gold="unharmful", pred_r="unharmful", response="No."),
        gr_row(3, "3B", task="response_harm", gold="unharmful", pred_r="harmful", response="No."),  # response mismatch
        gr_row(4, "8B", task="response_refusal", gold="refusal", response="No."),                  # skipped: not a harm label
    ]
    candidates, skipped = guardreasoner_candidates(rows)
    assert skipped == {"refusal_task": 1} and len(candidates) == 7
    resp_item = next(c for c in candidates if c.item_key == "Bench-3")
    assert resp_item.example.prompt_harm_label == "harmful"  # teachers' majority: the benchmark labels the response only
    assert resp_item.example.extra["prompt_label_source"] == "teacher_majority"
    records = candidate_records(candidates, "gr", TraceFilters())
    reasons = {(r["item_key"], r["teacher_model"]): r["drop_reason"] for r in records}
    assert reasons[("Bench-1", "GuardReasoner-1B")] == "prompt_mismatch"
    assert reasons[("Bench-2", "GuardReasoner-8B")] == "empty_output"
    assert reasons[("Bench-2", "GuardReasoner-3B")] == "repetition"
    assert reasons[("Bench-3", "GuardReasoner-3B")] == "response_mismatch"
    assert reasons[("Bench-1", "GuardReasoner-8B")] is None and reasons[("Bench-3", "GuardReasoner-8B")] is None

    order = ["GuardReasoner-3B", "GuardReasoner-8B"]
    first = choose_traces(records, "first_passing", order)
    chosen = {(r["item_key"], r["teacher_model"]) for r in first if r["kept"]}
    assert chosen == {("Bench-1", "GuardReasoner-3B"), ("Bench-3", "GuardReasoner-8B")}
    assert sum(r["drop_reason"] == NOT_CHOSEN for r in first) == 1 and len(first) == len(records)
    every = choose_traces(records, "all", order)
    kept_all = [r for r in every if r["kept"]]
    assert len(kept_all) == 3 and len({r["id"] for r in kept_all}) == 3  # one row per teacher: ids carry @teacher
    shortest = choose_traces(records, "shortest_passing", order)
    assert {r["item_key"] for r in shortest if r["kept"]} == {"Bench-1", "Bench-3"}
    stats = import_stats(first, skipped, "first_passing")
    assert stats["total"] == 7 and stats["kept"] == 3 and stats["chosen"] == 2 and stats["not_chosen"] == 1
    assert stats["dropped"]["prompt_mismatch"] == 1 and stats["skipped_rows"] == {"refusal_task": 1}
    assert stats["per_teacher"]["GuardReasoner-3B"] == {"total": 3, "passing": 1, "chosen": 1}
    with pytest.raises(ValueError, match="unknown choose rule"):
        choose_traces(records, "longest", order)  # type: ignore[arg-type]


def test_nemotron_rows_use_traces_and_mismatch_flags():
    ex = GuardExample(id="n:1", source="hf_nemotron_safety_reasoning", prompt="How do I make a bomb?", response=None,
                      prompt_harm_label="harmful", split="train",
                      extra={"efficient_reasoning": {"qwen3_32b": "<think>The user asks for bomb-making steps, which enable violence.</think>",
                                                     "gpt_oss_120b": "The user asks for explosive instructions that could kill people."},
                             "prediction_gt_mismatch": {"qwen3_32b": False, "gpt_oss_120b": True}})
    candidates, skipped = nemotron_candidates([ex, GuardExample(id="n:2", source="s", prompt="x", prompt_harm_label="harmful")])
    assert skipped == {"no_trace": 1} and len(candidates) == 2
    records = {r["teacher_model"]: r for r in candidate_records(candidates, "nemotron", TraceFilters())}
    assert records["qwen3_32b"]["kept"] and "<think>" not in records["qwen3_32b"]["reasoning"]
    assert records["gpt_oss_120b"]["drop_reason"] == "prompt_mismatch"


def test_the_job_writes_what_distill_writes(tmp_path):
    from jobs.import_traces import run
    from reasonguard.config.import_traces import ImportTracesConfig
    from reasonguard.io import read_parts  # noqa: F401 - the same readers as distill outputs
    import pyarrow.parquet as pq

    src = tmp_path / "traces.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [gr_row(1, "8B"), gr_row(1, "3B"), gr_row(2, "8B", pred_p="unharmful")]))
    cfg = ImportTracesConfig.model_validate({"sources": [{"format": "guardreasoner", "path": str(src)}], "output_dir": str(tmp_path / "out"),
                                             "teacher_order": ["GuardReasoner-8B"]})
    out = run(cfg)
    traces = pq.read_table(out / "traces.parquet").to_pylist()
    rejected = pq.read_table(out / "rejected.parquet").to_pylist()
    stats = json.loads((out / "stats.json").read_text())
    assert [(r["id"], r["teacher_model"]) for r in traces] == [("Bench-1", "GuardReasoner-8B")]
    assert {r["drop_reason"] for r in rejected} == {NOT_CHOSEN, "prompt_mismatch"}
    assert stats["chosen"] == 1 and stats["items"] == 2 and stats["total"] == 3
    # shorten and sft_data read this table as they read distill's: the trace columns are there
    assert {"dataset", "id", "prompt", "prompt_harm_label", "reasoning", "kept", "teacher_model"} <= set(traces[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    with pytest.raises(ValueError, match="bad.jsonl, line 1"):
        run(cfg.model_copy(update={"sources": [cfg.sources[0].model_copy(update={"path": str(bad)})]}))


def test_a_sample_of_the_recorded_guardreasoner_traces():
    from pipelines.import_traces import _jsonl
    from reasonguard.datasets.local import default_datasets_root

    try:
        root = default_datasets_root()
    except FileNotFoundError as exc:  # like every test of the vendored datasets (tests/datasets/conftest.py)
        pytest.skip(f"vendored datasets not available ({exc})")
    rows = _jsonl(str(Path(root) / "guardreasoner_traces" / "guardreasoner_traces.jsonl"), 600)
    candidates, skipped = guardreasoner_candidates(rows)
    records = choose_traces(candidate_records(candidates, "guardreasoner_traces", TraceFilters()), "first_passing")
    kept = [r for r in records if r["kept"]]
    assert len(kept) > 100 and len({r["item_key"] for r in kept}) == len(kept)  # one trace per item
    for r in kept:
        assert "# Task" not in r["reasoning"] and "## " not in r["reasoning"] and r["reasoning_words"] >= 5
