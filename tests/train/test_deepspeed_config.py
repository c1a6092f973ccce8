"""The DeepSpeed config builder: batch arithmetic, ZeRO stages, precision, offload, overrides."""

from __future__ import annotations

import json

import pytest

from reasonguard.train.deepspeed_config import build_deepspeed_config, deep_merge, gradient_accumulation_steps


@pytest.mark.parametrize("global_batch,micro,world,accum", [(32, 1, 8, 4), (32, 4, 8, 1), (32, 2, 2, 8), (8, 1, 2, 4), (8, 4, 2, 1)])
def test_micro_times_accumulation_times_world_is_global(global_batch, micro, world, accum):
    assert gradient_accumulation_steps(global_batch, micro, world) == accum
    cfg = build_deepspeed_config(global_batch_size=global_batch, micro_batch_size=micro, world_size=world)
    assert cfg["train_batch_size"] == global_batch
    assert cfg["train_micro_batch_size_per_gpu"] * cfg["gradient_accumulation_steps"] * world == global_batch


@pytest.mark.parametrize("global_batch,micro,world", [(32, 3, 8), (10, 4, 2), (8, 16, 1)])
def test_indivisible_batch_is_rejected_with_the_numbers(global_batch, micro, world):
    with pytest.raises(ValueError, match=f"global batch {global_batch}.*micro-batch {micro}.*world size {world}"):
        build_deepspeed_config(global_batch_size=global_batch, micro_batch_size=micro, world_size=world)


def test_bad_values_rejected():
    with pytest.raises(ValueError, match="world_size"):
        gradient_accumulation_steps(8, 1, 0)
    with pytest.raises(ValueError, match="zero_stage"):
        build_deepspeed_config(global_batch_size=8, micro_batch_size=1, world_size=1, zero_stage=4)
    with pytest.raises(ValueError, match="fp16"):
        build_deepspeed_config(global_batch_size=8, micro_batch_size=1, world_size=1, precision="fp16")
    with pytest.raises(ValueError, match="offload_params"):
        build_deepspeed_config(global_batch_size=8, micro_batch_size=1, world_size=1, zero_stage=2, offload_params=True)
    with pytest.raises(ValueError, match="offload_optimizer"):
        build_deepspeed_config(global_batch_size=8, micro_batch_size=1, world_size=1, zero_stage=1, offload_optimizer=True)


def test_cpu_zero2_fp32():
    cfg = build_deepspeed_config(global_batch_size=8, micro_batch_size=4, world_size=2, zero_stage=2, precision="fp32",
                                 learning_rate=3e-3, max_grad_norm=0.5)
    assert cfg["zero_optimization"]["stage"] == 2
    assert cfg["bf16"] == {"enabled": False} and cfg["fp16"] == {"enabled": False}
    assert cfg["optimizer"]["type"] == "AdamW" and cfg["optimizer"]["params"]["lr"] == 3e-3
    assert cfg["optimizer"]["params"]["torch_adam"] is True  # no fused-Adam op to compile
    assert cfg["gradient_clipping"] == 0.5
    assert "scheduler" not in cfg  # the loop owns the schedule (shared with the plain-torch path)
    json.dumps(cfg)  # plain JSON, as DeepSpeed and the docs expect


def test_gpu_zero3_bf16_gathers_weights_for_hf_export():
    cfg = build_deepspeed_config(global_batch_size=32, micro_batch_size=1, world_size=8, zero_stage=3, precision="bf16")
    zero = cfg["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg["bf16"] == {"enabled": True} and cfg["gradient_accumulation_steps"] == 4
    assert "offload_param" not in zero and "offload_optimizer" not in zero


def test_offload_uses_cpu_adam():
    cfg = build_deepspeed_config(global_batch_size=8, micro_batch_size=1, world_size=8, zero_stage=3,
                                 offload_optimizer=True, offload_params=True)
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert cfg["optimizer"]["params"]["torch_adam"] is False


def test_extra_is_deep_merged_without_touching_the_input():
    extra = {"zero_optimization": {"overlap_comm": True}, "steps_per_print": 5}
    cfg = build_deepspeed_config(global_batch_size=8, micro_batch_size=1, world_size=2, extra=extra)
    assert cfg["zero_optimization"]["overlap_comm"] is True and cfg["zero_optimization"]["stage"] == 2
    assert cfg["steps_per_print"] == 5
    base = {"a": {"b": 1}}
    assert deep_merge(base, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}} and base == {"a": {"b": 1}}
