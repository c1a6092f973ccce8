"""`SftDataConfig` (jobs.sft_data: which examples, in which modes) and `TrainConfig` (jobs.train: Ray Train + DeepSpeed SFT).

Defaults follow the paper where it is known: global batch 32, 5 epochs, cosine schedule,
learning rate 1e-6 for a full fine-tune. Everything a training worker needs travels in one
validated `TrainConfig`, so the per-worker loop reads no module globals.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.common import RayConfig
from reasonguard.config.sft_data import Budget, SftDataConfig, TopicFollowingMix  # noqa: F401

from reasonguard.vocabulary import SftMode  # noqa: F401


class TrainData(StrictModel):
    """Where the SFT rows come from and how they become token sequences."""

    sft_path: str | None = Field(None, description="SFT rows written by jobs.sft_data (.parquet or .jsonl).")
    build: SftDataConfig | None = Field(None, description="Or build the SFT rows on the fly from traces/labelled data.")
    max_seq_len: int = Field(2048, ge=64, description="Longest sequence; longer examples shrink their conversation "
                             "(then their reasoning) but never lose the verdict, or are dropped.")
    packing: bool = Field(False, description="Pack several examples per sequence (position ids restart per example).")

    @model_validator(mode="after")
    def _one_source(self) -> "TrainData":
        if (self.sft_path is None) == (self.build is None):
            raise ValueError("give exactly one of data.sft_path or data.build")
        return self


class DeepSpeedSettings(StrictModel):
    """DeepSpeed ZeRO: the JSON is produced by reasonguard.train.deepspeed_config.build_deepspeed_config."""

    enabled: bool = Field(True, description="False = the plain torch loop (DDP when several workers): for debugging and baselines.")
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="ZeRO stage: 2 shards optimizer state and gradients, 3 also the weights.")
    offload_optimizer: bool = Field(False, description="Keep optimizer state in CPU memory (ZeRO-2/3).")
    offload_params: bool = Field(False, description="Keep weights in CPU memory (ZeRO-3 only).")
    extra: dict[str, Any] = Field(default_factory=dict, description="Merged into the generated DeepSpeed config (deep merge).")

    @model_validator(mode="after")
    def _offload(self) -> "DeepSpeedSettings":
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.offload_optimizer and self.zero_stage < 2:
            raise ValueError("offload_optimizer needs zero_stage 2 or 3")
        return self


class LoraSettings(StrictModel):
    """LoRA through peft: only adapter weights train; the export can merge them into the base."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="peft target_modules ('all-linear' or module names).")
    merge_on_export: bool = Field(True, description="Final export = base + merged adapter (loadable by vLLM as is); "
                                  "the adapter alone is kept next to it.")
    init_adapter: str | None = Field(
        None, description="Continue a trained adapter instead of starting a fresh one: a peft adapter folder of the same "
        "base model, or 'embedded-guard' (the shipped one). Its own r/alpha/target modules apply.")


class ScalingSettings(StrictModel):
    num_workers: int = Field(2, ge=1, description="Training workers (one per GPU on a GPU cluster).")
    use_gpu: bool = Field(False, description="One GPU per worker, NCCL; False = CPU workers over gloo.")
    cpus_per_worker: float = Field(1, gt=0, description="CPUs reserved per worker.")


class CheckpointSettings(StrictModel):
    num_to_keep: int | None = Field(2, ge=1, description="Checkpoints kept in storage (None = all).")
    every_steps: int | None = Field(None, ge=1, description="Also checkpoint every N optimizer steps (always at each epoch end).")


class FaultInjection(StrictModel):
    """Testing only: SIGKILL one worker, once per run, to exercise FailureConfig recovery."""

    rank: int = Field(1, ge=0)
    at_step: int = Field(ge=1, description="The worker kills itself when this optimizer step starts.")


class TrainConfig(StrictModel):
    """What jobs.train runs: SFT of `model` on `data`, Ray Train workers running DeepSpeed."""

    model: str = Field(min_length=1, description="Student: alias ('tiny', 'smollm2'), local HF checkpoint or hub id.")
    data: TrainData
    output_dir: str = Field("outputs/train", description="Final checkpoint (`final/`), metrics and the local run storage.")
    run_name: str = Field("sft", min_length=1, description="Ray run name; a second run with the same name resumes its latest checkpoint.")
    storage_path: str | None = Field(None, description="Ray Train storage (s3://, gs://, NFS on multi-node); None = <output_dir>/ray.")
    epochs: int = Field(5, ge=1)
    global_batch_size: int = Field(32, ge=1, description="Examples (or packed sequences) per optimizer step, all workers together.")
    micro_batch_size: int = Field(1, ge=1, description="Per worker per forward; accumulation = global / (micro x workers).")
    learning_rate: float = Field(1e-6, gt=0, description="Peak learning rate (paper: 1e-6 full fine-tune; LoRA wants ~1e-4).")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Linear warmup over this share of all steps, then cosine decay.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Cosine floor as a share of the peak learning rate.")
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(1e-8, gt=0)
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping (0 = off).")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto = bf16 on GPU, fp32 on CPU.")
    gradient_checkpointing: bool = False
    attn_implementation: str | None = Field(None, description="transformers attention ('sdpa', 'flash_attention_2'); None = default.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (debugging, "
                                     "benchmarks); the learning-rate schedule still spans all epochs, so a later run resumes it.")
    seed: int = 0
    logging_steps: int = Field(1, ge=1)
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings)
    lora: LoraSettings | None = Field(None, description="None = full fine-tune.")
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    max_failures: int = Field(2, ge=-1, description="Worker-group restarts from the latest checkpoint (-1 = unlimited).")
    fault_injection: FaultInjection | None = Field(None, description="Testing only: kill a worker once mid-training.")
    launcher: Literal["ray", "local"] = Field(
        "ray", description="'ray' = Ray Train workers; 'local' = this process (or torchrun's processes), no Ray."
    )
    ray: RayConfig = Field(default_factory=RayConfig)

    @model_validator(mode="after")
    def _batch(self) -> "TrainConfig":
        per_step = self.micro_batch_size * self.scaling.num_workers
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size x num_workers = {per_step}"
            )
        if self.fault_injection is not None and self.fault_injection.rank >= self.scaling.num_workers:
            raise ValueError("fault_injection.rank must be < scaling.num_workers")
        return self

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.global_batch_size // (self.micro_batch_size * self.scaling.num_workers)
