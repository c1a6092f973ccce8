"""`DemoConfig`: the end-to-end run on the embedded default, one sub-config per stage it chains."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel
from reasonguard.config.predict import PredictConfig

DemoStage = Literal["distill", "train", "predict"]


class DemoConfig(StrictModel):
    """Stages run in pipeline order; each writes under `output_dir/<stage>` whatever its own config says."""

    output_dir: str = "outputs/demo"
    stages: list[DemoStage] = Field(default_factory=lambda: ["predict"], min_length=1)
    predict: PredictConfig
    distill: dict | None = Field(None, description="A DistillConfig (see cluster/configs/distill_local.yaml).")
    train: dict | None = Field(None, description="A TrainConfig (see cluster/configs/train_local.yaml).")
    compare: dict[str, str] = Field(
        default_factory=lambda: {"shipped": "embedded-guard"},
        description="More guards the predict stage runs beside the base model and the guard the demo trains "
        "(name -> model alias, path or hub id); default: the shipped embedded guard.",
    )

    @model_validator(mode="after")
    def _sections(self) -> "DemoConfig":
        for stage in self.stages:
            if stage != "predict" and getattr(self, stage) is None:
                raise ValueError(f"stage '{stage}' is listed in stages but has no '{stage}' section")
        if "train" in self.stages:
            self.train_config()  # validate now, before anything heavy starts
        if "distill" in self.stages:
            self.distill_config()
        return self

    def distill_config(self):
        from reasonguard.config.base import validate_config
        from reasonguard.config.distill import DistillConfig

        return validate_config(DistillConfig, {"output_dir": f"{self.output_dir}/distill", **(self.distill or {})}, "demo.distill")

    def train_config(self):
        from reasonguard.config.base import validate_config
        from reasonguard.config.train import TrainConfig

        return validate_config(TrainConfig, {"output_dir": f"{self.output_dir}/train", **(self.train or {})}, "demo.train")
