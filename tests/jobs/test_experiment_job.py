"""An end-to-end toy study on real components (local Ray, Ray Train + DeepSpeed over gloo, transformers engines):
the refinement study trains a first guard, mines its difficult samples (jobs.mine), continues SFT on
them and on as many random items, evaluates every guard (jobs.evaluate) and writes one report with
every table and plot present and non-empty."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TRAIN = {
    "epochs": 1, "max_steps": 1, "global_batch_size": 2, "micro_batch_size": 1, "learning_rate": 1e-4, "precision": "fp32",
    "deepspeed": {"enabled": True, "zero_stage": 2}, "scaling": {"num_workers": 2, "use_gpu": False, "cpus_per_worker": 1},
    "checkpoint": {"num_to_keep": 1}, "ray": {"num_cpus": 2},
}


def test_refinement_study_end_to_end(tmp_path):
    from jobs.experiment import run
    from reasonguard.config.experiment import ExperimentConfig
    from serve.testing import build_tiny_guard

    guard = str(build_tiny_guard())
    config = ExperimentConfig.model_validate({
        "study": "refinement",
        "output_dir": str(tmp_path),
        "include_base": True,
        # mining and evaluation on the transformers engine actors: the same Ray Data path without a vLLM start
        # per guard (vLLM through ray.data.llm is tested by tests/pipelines); the study's wiring is what is tested
        "guard_engine": {"kind": "transformers", "device": "cpu"},
        "train": {**TRAIN, "model": guard, "data": {"max_seq_len": 1024, "build": {
            "labelled": [{"dataset": "demo", "split": "train", "limit": 6}], "mode": "no_think"}}},
        "mine": {"pool": [{"dataset": "demo", "split": "train", "offset": 6, "limit": 12, "name": "pool"}], "n_samples": 4,
                 "sampling": {"temperature": 1.0, "top_p": 1.0}, "max_tokens_by_mode": {"no_think": 16}, "ray": {"num_cpus": 2}},
        "evaluate": {"predict": {"data": [{"dataset": "demo", "split": "test", "offset": 14, "limit": 4}], "modes": ["no_think"],  # 2 prompt + 2 response items
                                 "max_tokens_by_mode": {"no_think": 16}, "ray": {"num_cpus": 2}}},
    })
    out = run(config)

    mining = json.loads((tmp_path / "mine" / "mining.json").read_text())
    assert sum(mining["counts"].values()) + mining["unlabelled"] == 12
    report = (out / "report.md").read_text()
    assert "| round1 |" in report
    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    guards = {r["guard"] for r in metrics["reports"]}
    assert {"base", "round1"} <= guards
    if mining["difficult"] >= TRAIN["global_batch_size"]:  # fewer make no training step: the variants are skipped
        assert {"refined-difficult", "refined-random"} <= guards
        assert (tmp_path / "refined-difficult" / "train" / "final" / "config.json").exists()
    for heading in ("Prompt harm (harmful-class F1), mean over samples", "Prompt harm (harmful-class F1), majority vote",
                    "Response harm (harmful-class F1), mean over samples", "Cost per item"):
        assert heading in report
    for png in ("f1_per_dataset.png", "f1_vs_tokens.png", "latency_vs_budget.png"):
        path = tmp_path / "evaluate" / png
        assert path.stat().st_size > 1000 and f"evaluate/{png}" in report
