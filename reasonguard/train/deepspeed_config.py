"""The DeepSpeed JSON config as a pure function of the training settings (unit-tested).

DeepSpeed refuses a config whose batch sizes disagree with the world size, but only once the
workers are up; checking micro-batch x accumulation x world = global batch here fails in
milliseconds on the driver instead.
"""

from __future__ import annotations

from typing import Any, Literal

from reasonguard.config.base import deep_merge


def gradient_accumulation_steps(global_batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """global = micro x accumulation x world, or a ValueError that says which numbers disagree."""
    for name, value in (("global_batch_size", global_batch_size), ("micro_batch_size", micro_batch_size), ("world_size", world_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    per_step = micro_batch_size * world_size
    if global_batch_size % per_step:
        raise ValueError(
            f"global batch {global_batch_size} is not divisible by micro-batch {micro_batch_size} x world size {world_size}"
        )
    return global_batch_size // per_step


def build_deepspeed_config(
    *,
    global_batch_size: int,
    micro_batch_size: int,
    world_size: int,
    zero_stage: int = 2,
    precision: Literal["bf16", "fp32"] = "fp32",
    learning_rate: float = 1e-6,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    max_grad_norm: float = 1.0,
    offload_optimizer: bool = False,
    offload_params: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A DeepSpeed config for SFT. The learning-rate schedule is not in it: the loop passes its own
    warmup + cosine scheduler, so the DeepSpeed and plain-torch paths share one schedule.

    `torch_adam` uses torch's AdamW rather than DeepSpeed's fused kernels, so no CUDA/C++ op has
    to be compiled for the optimizer (CPU offload needs DeepSpeed's CPU Adam and uses it).
    """
    accumulation = gradient_accumulation_steps(global_batch_size, micro_batch_size, world_size)
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0..3, got {zero_stage}")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32 (fp16 needs loss scaling; not supported), got {precision!r}")
    if offload_params and zero_stage != 3:
        raise ValueError("offload_params needs ZeRO stage 3")
    if offload_optimizer and zero_stage < 2:
        raise ValueError("offload_optimizer needs ZeRO stage 2 or 3")
    zero: dict[str, Any] = {"stage": zero_stage}
    if zero_stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True, reduce_bucket_size=5e7)
    if zero_stage == 3:
        # Gathers the full weights into each rank's 16-bit state dict at save time: a HF checkpoint.
        zero.update(stage3_gather_16bit_weights_on_model_save=True, stage3_prefetch_bucket_size=5e7,
                    stage3_param_persistence_threshold=1e5)
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_batch_size": global_batch_size,
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": learning_rate, "betas": list(betas), "eps": eps, "weight_decay": weight_decay,
                "torch_adam": not offload_optimizer,
            },
        },
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # the loop logs; DeepSpeed's own prints would repeat it per rank
        "wall_clock_breakdown": False,
    }
    return deep_merge(config, extra or {})
