"""The training stage body: Ray Train (TorchTrainer + DeepSpeed) over the SFT rows, then the exported
Hugging Face checkpoint with its hygiene fingerprints. `jobs.train` is the entry point and documents
the outputs.
"""

from __future__ import annotations

import contextlib
import logging
import time
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from reasonguard.config.train import TrainConfig

log = logging.getLogger(__name__)


def storage_path_of(config: TrainConfig) -> str:
    return config.storage_path or str((Path(config.output_dir) / "ray").resolve())


def built_rows(config: TrainConfig) -> list[dict] | None:
    """The SFT rows `data.build` makes (None when the rows come from `data.sft_path`); built once per
    run and shared by the Ray Dataset and the hygiene fingerprints."""
    if config.data.sft_path is not None:
        return None
    from reasonguard.sft import build_from_config

    result = build_from_config(config.data.build)
    log.info("built %d SFT rows: %s", len(result.rows), result.stats)
    return result.rows


def train_dataset(config: TrainConfig, rows: list[dict] | None = None):
    """The SFT rows as a Ray Dataset; every worker reads all rows and keeps its own fixed shard
    (reasonguard.train.data.prepare_samples), so batches do not depend on block scheduling.
    `rows`: rows already built from `data.build` (else built here, or read from `data.sft_path`)."""
    import ray.data

    if config.data.sft_path is not None:
        path = config.data.sft_path
        if path.endswith(".parquet") or Path(path).is_dir():
            return ray.data.read_parquet(path)
        return ray.data.read_json(path, lines=True)
    return ray.data.from_items(rows if rows is not None else built_rows(config))


def training_prompts(config: TrainConfig, rows: list[dict] | None = None) -> list[dict]:
    """The prompts the guard is trained on (for its hygiene fingerprints), read like the training rows."""
    if config.data.sft_path is not None:
        import pyarrow.dataset as pads

        path = config.data.sft_path
        fmt = "parquet" if path.endswith(".parquet") or Path(path).is_dir() else "json"
        return pads.dataset(path, format=fmt).to_table(columns=["prompt"]).to_pylist()
    return [{"prompt": r["prompt"]} for r in (rows if rows is not None else built_rows(config))]


def for_workers(config: TrainConfig) -> TrainConfig:
    """The config as Ray Train workers get it: a local model or adapter folder given relative to the
    driver's working directory made absolute (a worker runs in its own directory, where the relative
    path does not exist and transformers would take it for a hub id)."""
    def absolute(ref: str | None) -> str | None:
        if ref and Path(ref).expanduser().exists():
            return str(Path(ref).expanduser().resolve())
        return ref

    update = {"model": absolute(config.model)}
    if config.lora is not None and config.lora.init_adapter:
        update["lora"] = config.lora.model_copy(update={"init_adapter": absolute(config.lora.init_adapter)})
    return config.model_copy(update=update)


def fit(config: TrainConfig, rows: list[dict] | None = None):
    """Run the TorchTrainer and return Ray's `Result` (metrics, latest checkpoint)."""
    import ray.data
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines.ray_utils import WORKER_ENV, init_ray

    init_ray(config.ray.address, config.ray.num_cpus, config.ray.wait_for_min_actors_s)
    ray.data.DataContext.get_current().enable_progress_bars = False  # one tiny read per worker; bars only add noise
    scaling = ScalingConfig(
        num_workers=config.scaling.num_workers, use_gpu=config.scaling.use_gpu,
        resources_per_worker={"CPU": config.scaling.cpus_per_worker, **({"GPU": 1} if config.scaling.use_gpu else {})},
    )
    env = {**WORKER_ENV, "DS_ACCELERATOR": "cuda" if config.scaling.use_gpu else "cpu"}
    run_config = RunConfig(
        name=config.run_name,
        storage_path=storage_path_of(config),
        failure_config=FailureConfig(max_failures=config.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint.num_to_keep),
        worker_runtime_env={"env_vars": env},
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": for_workers(config).model_dump(mode="json")},
        scaling_config=scaling,
        run_config=run_config,
        # Materialised before the workers take their CPUs: on a small machine the workers hold every
        # CPU and a lazy read would wait for one forever. SFT sets are small (rows of text).
        datasets={"train": train_dataset(config, rows).materialize()},
        # Unsplit: each worker takes a fixed shard itself (exact resume, micro x accumulation invariance).
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),
    )
    return trainer.fit()


_IDENTITY_FIELDS = {"model", "data", "epochs", "global_batch_size", "learning_rate", "warmup_ratio", "min_lr_ratio",
                    "weight_decay", "adam_betas", "adam_eps", "max_grad_norm", "precision", "seed", "lora", "launcher"}


def run_identity(config: TrainConfig) -> dict:
    """What decides the weights (reasonguard.run_identity): a run resumes its checkpoints only when these
    match. Not among them: max_steps (a later run may go on), scaling, checkpointing, logging, Ray."""
    from reasonguard.models import model_fingerprint
    from reasonguard.run_identity import file_fingerprint

    fields = config.model_dump(mode="json", include=_IDENTITY_FIELDS)
    if fields.get("lora"):
        fields["lora"].pop("merge_on_export", None)  # an export choice: the checkpoints are the same
        if config.lora.init_adapter:
            from reasonguard.train.model import adapter_path

            fields["init_adapter_files"] = model_fingerprint(str(adapter_path(config.lora.init_adapter)))
    fields["zero_stage"] = config.deepspeed.zero_stage if config.deepspeed.enabled else None
    fields["model_files"] = model_fingerprint(config.model)
    if config.data.sft_path:
        fields["sft_rows_file"] = file_fingerprint(config.data.sft_path)
    return fields


def checkpoint_root(config: TrainConfig) -> Path | None:
    """Where this run's checkpoints live, when that is a local folder (None for s3://, gs://)."""
    if config.launcher == "local":
        return Path(config.output_dir) / "checkpoints" / config.run_name
    storage = storage_path_of(config)
    return None if "://" in storage else Path(storage) / config.run_name


def train(config: TrainConfig, restart_on_change: bool = False) -> Path:
    """Train and export: the final Hugging Face checkpoint folder (`<output_dir>/final`). Checkpoints of
    another configuration under the same run are an error, or are started afresh with `restart_on_change`."""
    from reasonguard.io import write_json
    from reasonguard.models import resolve_model
    from reasonguard.run_identity import claim_output_dir
    from reasonguard.train.checkpoint import HF_DIR, TrainerState, export_final

    started = time.monotonic()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = resolve_model(config.model)  # provision aliases once, before the workers race to do it
    root = checkpoint_root(config)
    if root is not None:
        claim_output_dir(root, run_identity(config), "training checkpoints", restart_on_change=restart_on_change)
    else:
        log.info("checkpoints in remote storage (%s): resuming without a configuration check", storage_path_of(config))
    merge = config.lora.merge_on_export if config.lora else True
    rows = None  # the local launcher builds its rows in the loop; the fingerprints then build them once more
    if config.launcher == "local":
        from reasonguard.train.loop import run_local

        state, latest = run_local(config)
        if int(os.environ.get("RANK", 0)) != 0:
            return (latest / HF_DIR) if latest else out  # torchrun: rank 0 exports
        if latest is None:
            raise RuntimeError("training finished without a checkpoint")
        checkpoint_ref = str(latest)
        final = export_final(latest / HF_DIR, out / "final", base_model=base, merge_lora=merge)
    else:
        rows = built_rows(config)
        result = fit(config, rows)
        if result.error:
            raise RuntimeError(f"training failed: {result.error}") from result.error
        if result.checkpoint is None:
            raise RuntimeError("training finished without a checkpoint")
        checkpoint_ref = result.checkpoint.path
        with result.checkpoint.as_directory() as folder:  # downloads it when storage is remote (s3://, gs://)
            state = TrainerState.read(folder)
            final = export_final(Path(folder) / HF_DIR, out / "final", base_model=base, merge_lora=merge)
    from reasonguard.hygiene import read_fingerprints, training_fingerprints, write_fingerprints

    # The guard remembers what it was trained on (a continued guard: its base's prompts too, and a continued
    # adapter's), so that predict and evaluate refuse test sets that overlap (reasonguard.hygiene).
    prints = training_fingerprints(training_prompts(config, rows)) | (read_fingerprints(base) or set())
    if config.lora is not None and config.lora.init_adapter:
        from reasonguard.train.model import adapter_path

        prints |= read_fingerprints(adapter_path(config.lora.init_adapter)) or set()
    write_fingerprints(prints, final, source=str(out / "config.yaml"))
    adapter_only = Path(str(final) + "-adapter")
    if adapter_only.is_dir():  # the adapter alone travels too (a later run may continue it): it remembers the same
        write_fingerprints(prints, adapter_only, source=str(out / "config.yaml"))
    summary = {"model": config.model, "final": str(final), "checkpoint": checkpoint_ref, "step": state.step,
               "epoch": state.epoch, "total_steps": state.total_steps, "tokens": state.tokens,
               "losses": [h["loss"] for h in state.log_history], "log_history": state.log_history,
               "wall_s": round(time.monotonic() - started, 1)}
    write_json(summary, out / "train_summary.json")
    (out / "config.yaml").write_text(_dump(config))
    log.info("final checkpoint: %s (step %d, loss %.4f)", final, state.step,
             state.log_history[-1]["loss"] if state.log_history else float("nan"))
    return final


def run(config: TrainConfig) -> Path:
    return train(config)


def _dump(config) -> str:
    from reasonguard.config import dump_config

    return dump_config(config)


# --- Ray Train, in one place: the session the core loop is handed, and the worker entry point ---


class RaySession:
    """Rank, data shard and checkpoints from Ray Train."""

    def __init__(self, cfg: TrainConfig):
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world_size, self.local_rank = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()

    def setup_distributed(self, cfg: TrainConfig) -> None:
        pass  # TorchTrainer has already made the process group (gloo on CPU, NCCL on GPUs)

    def device(self, cfg: TrainConfig):
        import ray.train.torch

        return ray.train.torch.get_device()

    def rows(self, cfg: TrainConfig) -> list[dict]:
        import ray.train

        return list(ray.train.get_dataset_shard("train").iter_rows())

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as folder:
            yield Path(folder)

    def checkpoint_folder(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-rank{self.rank}-"))

    def report(self, metrics: dict, folder: Path | None, name: str | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(folder)) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name if folder else None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point: `loop_config["train"]` is a TrainConfig as a dict."""
    from reasonguard.train.loop import worker_loop

    cfg = TrainConfig.model_validate(loop_config["train"])
    worker_loop(cfg, RaySession(cfg))
