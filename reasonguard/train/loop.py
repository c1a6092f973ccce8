"""The per-worker SFT loop: everything comes from a `TrainConfig`, nothing from module globals.

`worker_loop(cfg, session)` is what every worker runs: under Ray Train (pipelines.train hands it a Ray session);
`run_local(config)` runs the very same loop without Ray, as one process or under torchrun
(`torchrun --nproc-per-node N -m jobs.train --config x.yaml --set launcher=local`).

Its parts: `data` (this rank's samples, deterministic batches), `model` (the student and its optimizer
backend), `step` (one optimizer step and its loss scaling), `checkpoint`, `local_session` (no Ray).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from reasonguard.config.train import TrainConfig
from reasonguard.train.checkpoint import HF_DIR, TrainerState, checkpoint_name, local_checkpoints, save_hf, write_state
from reasonguard.train.data import collate, iter_steps, prepare_samples, steps_per_epoch
from reasonguard.train.local_session import LocalSession
from reasonguard.train.model import ds_config_of, load_model, make_backend, precision_of
from reasonguard.train.step import all_reduce, train_step

log = logging.getLogger("reasonguard.train")


def _maybe_inject_fault(cfg: TrainConfig, rank: int, next_step: int) -> None:
    fault = cfg.fault_injection
    if fault is None or rank != fault.rank or next_step != fault.at_step:
        return
    marker = Path(cfg.output_dir) / f".fault-injected-{cfg.run_name}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"rank {rank} killed at step {next_step}\n")
    log.warning("fault injection: rank %d kills itself at step %d", rank, next_step)
    os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(session, backend, tokenizer, state: TrainerState, metrics: dict) -> None:
    """All ranks: engine shards, gathered HF weights (rank 0 writes them), trainer state, report."""
    import torch.distributed as dist

    name = checkpoint_name(state.step)
    folder = session.checkpoint_folder(name)
    backend.save(folder)
    state_dict = backend.hf_state_dict()
    if session.rank == 0:
        save_hf(backend.module, tokenizer, folder / HF_DIR, state_dict)
    if dist.is_initialized():
        dist.barrier()
    if session.rank == 0:
        write_state(state, folder)  # last: marks the folder complete
    session.report(metrics, folder, name)


def worker_loop(cfg: TrainConfig, session) -> TrainerState:
    """Train on this worker's shard; resume from the session's latest checkpoint when there is one."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.scaling.use_gpu else "cpu")
    import torch
    from transformers import AutoTokenizer

    from reasonguard.models import resolve_model

    session.setup_distributed(cfg)
    torch.manual_seed(cfg.seed)
    device, rank, world = session.device(cfg), session.rank, session.world_size
    path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    samples, counts = prepare_samples(session.rows(cfg), tokenizer, cfg, rank, world)
    accumulation = cfg.global_batch_size // (cfg.micro_batch_size * world)
    per_rank = cfg.micro_batch_size * accumulation
    smallest_shard = int(all_reduce([float(len(samples))], op="min")[0])
    n_steps = steps_per_epoch(smallest_shard, per_rank)
    if n_steps == 0:
        raise ValueError(f"the smallest of {world} data shards has {smallest_shard} samples (rank {rank} has {len(samples)}), "
                         f"no full step of {per_rank} per rank (global batch {cfg.global_batch_size}); "
                         "lower global_batch_size or add data")
    schedule_steps = cfg.epochs * n_steps  # max_steps stops early but keeps the schedule: a later run resumes it
    total = min(schedule_steps, cfg.max_steps or schedule_steps)
    precision = precision_of(cfg)
    ds_config = ds_config_of(cfg, world, precision) if cfg.deepspeed.enabled else None
    backend = make_backend(cfg, load_model(cfg, path, precision, ds_config), world, schedule_steps, precision, device)
    state = TrainerState(total_steps=total)
    with session.latest_checkpoint() as ckpt:
        if ckpt is not None:
            backend.load(ckpt)
            state = TrainerState.read(ckpt)
            state.total_steps = total
            log.info("rank %d resumed from %s at step %d", rank, ckpt.name, state.step)
    if rank == 0:
        log.info("samples/rank %d (%s), %d steps/epoch, %d steps, accumulation %d, precision %s, deepspeed %s",
                 len(samples), dict(counts), n_steps, total, accumulation, precision, cfg.deepspeed.enabled)
    backend.train()
    run_tokens, run_seconds = 0, 0.0
    metrics: dict = {}
    while state.step < total and state.epoch < cfg.epochs:
        for s, step_samples in iter_steps(samples, n_steps, state.epoch, state.step_in_epoch, cfg.seed,
                                          cfg.micro_batch_size, accumulation):
            _maybe_inject_fault(cfg, rank, state.step + 1)
            lr = backend.lr()  # the rate this step uses (the scheduler moves on inside the step)
            start = time.perf_counter()
            loss, tokens = train_step(backend, [collate(m, pad_id) for m in step_samples], world, device)
            seconds = time.perf_counter() - start
            run_seconds += seconds
            run_tokens += tokens
            state.step, state.step_in_epoch, state.tokens = state.step + 1, s + 1, state.tokens + tokens
            if state.step_in_epoch == n_steps:
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            metrics = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": lr, "tokens": state.tokens,
                       "tokens_per_s": run_tokens / max(run_seconds, 1e-9)}
            state.log_history.append({**{k: metrics[k] for k in ("step", "epoch", "loss", "lr")},
                                      "step_tokens": tokens, "seconds": round(seconds, 4)})
            if rank == 0 and (state.step % cfg.logging_steps == 0 or state.step == total):
                log.info("step %d/%d epoch %d loss %.4f lr %.3g tok/s %.0f", state.step, total, state.epoch,
                         loss, metrics["lr"], metrics["tokens_per_s"])
            every = cfg.checkpoint.every_steps
            if state.step_in_epoch == 0 or state.step == total or (every and state.step % every == 0):
                save_checkpoint(session, backend, tokenizer, state, metrics)
            if state.step >= total:
                break
    return state


def run_local(cfg: TrainConfig) -> tuple[TrainerState, Path | None]:
    """The same loop without Ray (one process, or one of torchrun's); returns the state and the latest checkpoint."""
    session = LocalSession(cfg)
    state = worker_loop(cfg, session)
    found = local_checkpoints(session.root)
    return state, found[-1] if found else None
