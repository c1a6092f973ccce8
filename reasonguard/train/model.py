"""The student as training holds it: precision, the model loaded (ZeRO-3 partitioned while loading,
LoRA wrapped), and the optimizer backend (DeepSpeed or plain torch) with its schedule."""

from __future__ import annotations

from typing import Any

from reasonguard.config.train import TrainConfig


def precision_of(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if cfg.scaling.use_gpu else "fp32"


def load_model(cfg: TrainConfig, path: str, precision: str, ds_config: dict | None):
    import torch
    from transformers import AutoModelForCausalLM

    keep_alive = None
    if ds_config is not None and ds_config["zero_optimization"]["stage"] == 3:
        # Partition the weights while loading (zero.Init) instead of materialising them on every rank.
        from transformers.integrations.deepspeed import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)  # noqa: F841 - must stay referenced during from_pretrained
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if precision == "bf16" and ds_config is not None else torch.float32}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
        if cfg.lora.init_adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_path(cfg.lora.init_adapter)), is_trainable=True)
        else:
            lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                              target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)
    del keep_alive
    return model


def adapter_path(name_or_path: str):
    """The folder of an adapter to continue: 'embedded-guard' is the shipped one."""
    from pathlib import Path

    from reasonguard.models import EMBEDDED_GUARD_ADAPTER, EMBEDDED_GUARD_NAME

    path = EMBEDDED_GUARD_ADAPTER if name_or_path == EMBEDDED_GUARD_NAME else Path(name_or_path)
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"lora.init_adapter {name_or_path!r}: no adapter_config.json in {path}")
    return path


def make_backend(cfg: TrainConfig, model, world_size: int, total_steps: int, precision: str, device):
    from reasonguard.train.backend import DeepSpeedBackend, TorchBackend, schedule_fn
    from reasonguard.train.deepspeed_config import gradient_accumulation_steps

    lr_lambda = schedule_fn(total_steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    accumulation = gradient_accumulation_steps(cfg.global_batch_size, cfg.micro_batch_size, world_size)
    if cfg.deepspeed.enabled:
        return DeepSpeedBackend(model, ds_config_of(cfg, world_size, precision), lr_lambda)
    import torch

    model.to(device)
    return TorchBackend(model, accumulation=accumulation, lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps,
                        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, lr_lambda=lr_lambda,
                        device=device, autocast_dtype=torch.bfloat16 if precision == "bf16" else None)


def ds_config_of(cfg: TrainConfig, world_size: int, precision: str) -> dict:
    from reasonguard.train.deepspeed_config import build_deepspeed_config

    ds = cfg.deepspeed
    return build_deepspeed_config(
        global_batch_size=cfg.global_batch_size, micro_batch_size=cfg.micro_batch_size, world_size=world_size,
        zero_stage=ds.zero_stage, precision=precision, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        betas=cfg.adam_betas, eps=cfg.adam_eps, max_grad_norm=cfg.max_grad_norm, offload_optimizer=ds.offload_optimizer,
        offload_params=ds.offload_params, extra=ds.extra,
    )
