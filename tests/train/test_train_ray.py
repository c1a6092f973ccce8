"""Ray Train + DeepSpeed for real: local Ray, 2 CPU workers over gloo, ZeRO-2, fp32, the tiny model.

One reference run learns the guard format (10 epochs, a checkpoint per epoch); short runs of the
same config (its schedule spans the same 10 epochs; `max_steps` only stops early) are then
compared with its loss trajectory: micro-batch 1 x accumulation 4, a stop-and-resume, and a run
that loses a worker mid-training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonguard.config import validate_config
from reasonguard.config.train import TrainConfig

from .conftest import POLICY, base_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Float sums run in another order when the batch is split differently; 6 Adam steps keep it tiny.
LOSS_RTOL = 2e-3


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from pipelines.ray_utils import init_ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train_ray")


def _train(sft_path: str, workdir: Path, name: str, **overrides) -> tuple[Path, dict]:
    from jobs.train import train

    final = train(validate_config(TrainConfig, base_config(sft_path, workdir, name, **overrides)))
    return final, json.loads((workdir / name / "train_summary.json").read_text())


@pytest.fixture(scope="module")
def reference(ray_local, sft_path, workdir):
    return _train(sft_path, workdir, "reference")


def _guard_requests() -> list[list[dict]]:
    from reasonguard.datasets import load_demo
    from reasonguard.prompts import GuardInput, guard_messages

    prompts = [e.prompt for e in load_demo() if e.response is None][:3] + ["How do I bake sourdough bread at home?"]
    return [guard_messages(GuardInput(p), mode, POLICY) for p in prompts for mode in ("think", "no_think")]


def _assert_parseable(texts: list[str]) -> None:
    from reasonguard.verdict import parse_verdict

    for i, text in enumerate(texts):
        verdict = parse_verdict(text)
        assert verdict.parsed_ok, f"unparseable output {text!r}"
        assert (verdict.reasoning is not None) == (i % 2 == 0), f"think block must come exactly in think mode: {text!r}"


def test_loss_falls_and_each_epoch_is_checkpointed(reference, workdir):
    _, summary = reference
    losses = summary["losses"]
    assert len(losses) == summary["step"] == 120 and summary["epoch"] == 10
    assert sum(losses[-12:]) / 12 < 0.1 * sum(losses[:3]) / 3
    kept = sorted(p.name for p in (workdir / "ray" / "reference").glob("checkpoint_step_*"))
    assert kept == ["checkpoint_step_0000108", "checkpoint_step_0000120"]  # epochs 9 and 10 (num_to_keep 2)
    assert summary["checkpoint"].endswith("checkpoint_step_0000120")


def test_checkpoint_loads_in_transformers_and_answers_in_both_modes(reference):
    from reasonguard.engines import SamplingConfig
    from reasonguard.engines.hf_engine import TransformersEngine

    final, _ = reference
    engine = TransformersEngine(str(final), device="cpu", batch_size=8)
    outs = engine.generate(_guard_requests(), SamplingConfig(temperature=0, max_tokens=48))
    _assert_parseable([o.generations[0].text for o in outs])


@pytest.mark.vllm
def test_checkpoint_loads_in_vllm_and_answers_in_both_modes(reference):
    pytest.importorskip("vllm")
    from reasonguard.engines import SamplingConfig
    from reasonguard.engines.vllm_engine import VLLMEngine

    final, _ = reference
    with VLLMEngine(str(final), max_model_len=1024) as engine:
        outs = engine.generate(_guard_requests(), SamplingConfig(temperature=0, max_tokens=48))
    _assert_parseable([o.generations[0].text for o in outs])


def test_micro_batch_1_x_accumulation_4_matches_4_x_1(reference, sft_path, sft_build, workdir):
    _, ref = reference
    # This run also builds its SFT rows on the driver (data.build -> Ray Data from_items) rather than
    # reading the file: the same rows, so the same trajectory.
    _, split = _train(sft_path, workdir, "micro1", micro_batch_size=1, max_steps=6,
                      data={"sft_path": None, "build": sft_build})
    assert split["losses"] == pytest.approx(ref["losses"][:6], rel=LOSS_RTOL)
    assert split["losses"][-1] < split["losses"][0]


def test_resume_continues_from_the_saved_step(reference, sft_path, workdir):
    _, ref = reference
    _, first = _train(sft_path, workdir, "resume", max_steps=3)
    assert first["step"] == 3
    _, second = _train(sft_path, workdir, "resume", max_steps=6)  # same run name and storage: resumes
    assert [h["step"] for h in second["log_history"]] == [1, 2, 3, 4, 5, 6]  # nothing redone, nothing skipped
    # Weights, optimizer state, schedule and data order all come back: the same losses as without the stop.
    assert second["losses"][3:] == pytest.approx(ref["losses"][3:6], rel=LOSS_RTOL)


def test_killed_worker_is_replaced_and_training_finishes_from_the_last_checkpoint(reference, sft_path, workdir):
    _, ref = reference
    _, summary = _train(sft_path, workdir, "killed", max_steps=6, checkpoint={"every_steps": 2},
                        fault_injection={"rank": 1, "at_step": 5})
    assert (workdir / "killed" / ".fault-injected-killed").read_text().startswith("rank 1 killed at step 5")
    assert [h["step"] for h in summary["log_history"]] == [1, 2, 3, 4, 5, 6]  # restarted from step 4's checkpoint
    assert summary["losses"] == pytest.approx(ref["losses"][:6], rel=LOSS_RTOL)
