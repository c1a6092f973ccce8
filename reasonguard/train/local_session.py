"""The training session without Ray (one process, or one of torchrun's): rank from torchrun's
environment, checkpoints under `<output_dir>/checkpoints/<run_name>`. pipelines.train has Ray Train's."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

from reasonguard.config.train import TrainConfig
from reasonguard.train.checkpoint import local_checkpoints, prune_local_checkpoints
from reasonguard.train.data import load_sft_rows


class LocalSession:
    """Without Ray: rank from torchrun's environment (or a single process), checkpoints in output_dir."""

    def __init__(self, cfg: TrainConfig):
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.root = Path(cfg.output_dir) / "checkpoints" / cfg.run_name
        self.keep = cfg.checkpoint.num_to_keep
        self.last_metrics: dict = {}

    def setup_distributed(self, cfg: TrainConfig) -> None:
        import torch.distributed as dist

        if dist.is_initialized() or (self.world_size == 1 and not cfg.deepspeed.enabled):
            return
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
        dist.init_process_group("nccl" if cfg.scaling.use_gpu else "gloo", rank=self.rank, world_size=self.world_size)

    def device(self, cfg: TrainConfig):
        import torch

        if cfg.scaling.use_gpu:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def rows(self, cfg: TrainConfig) -> list[dict]:
        return load_sft_rows(cfg)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        found = local_checkpoints(self.root)
        yield found[-1] if found else None

    def checkpoint_folder(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def report(self, metrics: dict, folder: Path | None, name: str | None) -> None:
        self.last_metrics = dict(metrics)
        if folder is not None and self.rank == 0:
            prune_local_checkpoints(self.root, self.keep)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
