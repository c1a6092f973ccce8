"""`MineConfig`: difficult-sample mining over a pool, then (optionally) continual SFT on what was mined."""

from __future__ import annotations

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel, deep_merge, validate_config
from reasonguard.config.common import DataSource, Mode, PipelineSettings, PolicySpec, RayConfig, SamplingSettings
from reasonguard.config.engine import EngineConfig


class MineConfig(StrictModel):
    """Predict `n_samples` per pool item with `guard`; keep the inconsistent items; continue SFT on them."""

    guard: EngineConfig = Field(description="The first-round guard (its checkpoint is also where continual SFT starts).")
    pool: list[DataSource] = Field(default_factory=list, description="Labelled data not used to train the first guard.")
    pool_traces: str | None = Field(None, description="Or a traces parquet (distill/shorten output): items keep their reasoning.")
    exclude_trained: bool = Field(
        True, description="Leave out pool items the guard was trained on (their prompts are in the "
        "training_fingerprints.json beside its checkpoint): the paper mines the rest of the training set, so the "
        "pool can be the whole trace table the first guard's subset came from.",
    )
    mode: Mode = Field("no_think", description="The mode the guard is sampled in while mining.")
    n_samples: int = Field(4, ge=2, description="Samples per item: an item is inconsistent when some are right and some wrong.")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    max_tokens_by_mode: dict[Mode, int] = Field(default_factory=lambda: {"no_think": 32})
    policy: PolicySpec = None
    output_dir: str = "outputs/mine"
    train: dict | None = Field(
        None, description="Continual SFT: a TrainConfig without `model` (the guard's checkpoint) and with `data.build` "
        "lacking its sources (the difficult set is filled in). None = mine only.",
    )
    ray: RayConfig = Field(default_factory=RayConfig)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    @model_validator(mode="after")
    def _check(self) -> "MineConfig":
        if not self.pool and self.pool_traces is None:
            raise ValueError("give 'pool' (datasets) or 'pool_traces' (a traces parquet)")
        if self.train is not None:
            if "model" in self.train:
                raise ValueError("train.model is the guard's checkpoint; remove it")
            self.train_config("difficult.parquet")
        return self

    def train_config(self, difficult_path: str):
        """The continual-SFT TrainConfig reading `difficult_path`."""
        from reasonguard.config.train import TrainConfig

        build = deep_merge({"mode": "no_think"}, (self.train.get("data") or {}).get("build") or {})
        build["traces"] = [difficult_path]
        data = deep_merge(self.train.get("data") or {}, {"build": build})
        data.pop("sft_path", None)
        merged = deep_merge({"output_dir": f"{self.output_dir}/train", "run_name": "continual-sft"}, {**self.train, "data": data})
        return validate_config(TrainConfig, {**merged, "model": self.guard.model}, "mine.train")
