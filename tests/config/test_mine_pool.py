"""Mining's pool leaves out what the guard was trained on (the paper mines "the rest of the training
set"): the fingerprints beside the guard's checkpoint decide, so the pool can be the whole trace table."""

from __future__ import annotations

import json

from pipelines.mine import load_pool
from reasonguard.config.mine import MineConfig
from reasonguard.datasets import load_dataset
from reasonguard.hygiene import training_fingerprints, write_fingerprints


def _guard(tmp_path, trained_prompts):
    ckpt = tmp_path / "final"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_fingerprints(training_fingerprints({"prompt": p} for p in trained_prompts), ckpt)
    return str(ckpt)


def test_pool_leaves_out_the_guards_training_prompts(tmp_path):
    demo = [e for e in load_dataset("demo") if e.split == "train"]
    trained = [e.prompt.upper() + "!" for e in demo[:5]]  # normalised: case and punctuation do not hide them
    guard = {"kind": "vllm", "model": _guard(tmp_path, trained)}
    pool = [{"dataset": "demo", "split": "train"}]
    examples, _ = load_pool(MineConfig(guard=guard, pool=pool))
    assert [e.id for e in examples] == [e.id for e in demo[5:]]
    everything, _ = load_pool(MineConfig(guard=guard, pool=pool, exclude_trained=False))
    assert len(everything) == len(demo)


def test_a_guard_without_fingerprints_keeps_the_whole_pool(tmp_path):
    ckpt = tmp_path / "base"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    examples, _ = load_pool(MineConfig(guard={"kind": "vllm", "model": str(ckpt)}, pool=[{"dataset": "demo"}]))
    assert len(examples) == len(load_dataset("demo"))
