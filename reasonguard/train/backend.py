"""Two ways to take an optimizer step, behind one small interface: DeepSpeed ZeRO, or plain torch
(DDP when there are several processes). The loop calls, per micro-batch:
`with backend.accumulate(last): loss = forward(...); backend.backward(loss)`, then `backend.micro_step()`.

Both divide the loss by the accumulation steps and average gradients over ranks, so the loop
scales its summed token loss once, the same way for both.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Callable

from reasonguard.train.checkpoint import ENGINE_DIR


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate factor of optimizer step `step` (0-based): linear warmup, then cosine to `min_ratio`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule_fn(total_steps: int, warmup_ratio: float, min_ratio: float) -> Callable[[int], float]:
    warmup = int(math.ceil(warmup_ratio * total_steps))
    return lambda step: cosine_with_warmup(step, warmup, total_steps, min_ratio)


def resync_lr(scheduler) -> None:
    """After a resume, set the rate of the restored step under *this* run's schedule (the saved rate
    belongs to the previous run's schedule, which differs when epochs or max_steps changed)."""
    step = scheduler.last_epoch
    for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * fn(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


class DeepSpeedBackend:
    def __init__(self, model, ds_config: dict, lr_lambda: Callable[[int], float]):
        import deepspeed
        from torch.optim.lr_scheduler import LambdaLR

        params = [p for p in model.parameters() if p.requires_grad]
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model, model_parameters=params, config=ds_config, lr_scheduler=lambda opt: LambdaLR(opt, lr_lambda),
        )
        self.zero_stage = int(ds_config["zero_optimization"]["stage"])

    @property
    def module(self):
        return self.engine.module

    def train(self) -> None:
        self.engine.train()

    def forward(self, **kwargs: Any):
        return self.engine(**kwargs)

    def accumulate(self, last: bool):
        return contextlib.nullcontext()  # DeepSpeed reduces gradients at its own accumulation boundary

    def backward(self, loss) -> None:
        self.engine.backward(loss)

    def micro_step(self) -> None:
        self.engine.step()  # applies the update only at the accumulation boundary

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, folder: Path) -> None:
        """Every rank: its optimizer/weight shards under <folder>/engine (rank 0 also the model states)."""
        (folder / ENGINE_DIR).mkdir(parents=True, exist_ok=True)
        self.engine.save_checkpoint(str(folder / ENGINE_DIR), tag="state", save_latest=False,
                                    exclude_frozen_parameters=True)

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder / ENGINE_DIR), tag="state", load_module_strict=False)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the checkpoint in {folder / ENGINE_DIR}")
        resync_lr(self.scheduler)

    def hf_state_dict(self) -> dict | None:
        """Every rank must call this (ZeRO-3 gathers the partitioned weights); None = the module's own."""
        if self.zero_stage == 3:
            return self.engine._zero3_consolidated_16bit_state_dict()
        return None


class TorchBackend:
    """The same step without DeepSpeed: torch AdamW, gradient accumulation, clipping, DDP if distributed."""

    def __init__(self, model, *, accumulation: int, lr: float, betas, eps: float, weight_decay: float,
                 max_grad_norm: float, lr_lambda: Callable[[int], float], device, autocast_dtype=None):
        import torch
        import torch.distributed as dist
        from torch.optim.lr_scheduler import LambdaLR

        self._module = model
        self.model = model
        if dist.is_initialized() and dist.get_world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        params = [p for p in model.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        self.scheduler = LambdaLR(self.optimizer, lr_lambda)
        self.accumulation = accumulation
        self.max_grad_norm = max_grad_norm
        self.autocast_dtype = autocast_dtype
        self.device = device
        self._micro = 0

    @property
    def module(self):
        return self._module

    def train(self) -> None:
        self.model.train()

    def forward(self, **kwargs: Any):
        import torch

        if self.autocast_dtype is None:
            return self.model(**kwargs)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            return self.model(**kwargs)

    def accumulate(self, last: bool):
        if last or not hasattr(self.model, "no_sync"):
            return contextlib.nullcontext()
        return self.model.no_sync()  # all-reduce once per optimizer step, as DeepSpeed does

    def backward(self, loss) -> None:
        (loss / self.accumulation).backward()

    def micro_step(self) -> None:
        import torch

        self._micro += 1
        if self._micro % self.accumulation:
            return
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, folder: Path) -> None:
        import torch
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() != 0:
            return  # state is replicated: rank 0 writes it
        (folder / ENGINE_DIR).mkdir(parents=True, exist_ok=True)
        state = {"model": self._module.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict()}
        tmp = folder / ENGINE_DIR / "torch_state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, folder / ENGINE_DIR / "torch_state.pt")

    def load(self, folder: Path) -> None:
        import torch

        state = torch.load(folder / ENGINE_DIR / "torch_state.pt", map_location=self.device, weights_only=False)
        self._module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        resync_lr(self.scheduler)

    def hf_state_dict(self) -> dict | None:
        return None
