"""The per-worker SFT loop: everything comes from a `TrainConfig`, nothing from module globals.

`worker_loop(cfg, session)` is what every worker runs: under Ray Train (pipelines.train hands it a Ray session);
`run_local(config)` runs the very same loop without Ray, as one process or under torchrun
(`torchrun --nproc-per-node N -m jobs.train --config x.yaml --set launcher=local`).

Loss: summed token cross-entropy over the assistant tokens, divided by the number of such tokens
in the whole global batch (all ranks, all micro-batches). That makes micro-batch x accumulation
splits of one global batch give the same update, whatever the examples' lengths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from reasonguard.config.train import TrainConfig
from reasonguard.train.checkpoint import HF_DIR, TrainerState, checkpoint_name, local_checkpoints, prune_local_checkpoints, save_hf, write_state

log = logging.getLogger("reasonguard.train")


# ---------------------------------------------------------------- the session without Ray (pipelines.train has Ray Train's)


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


# ---------------------------------------------------------------- data and model


def load_sft_rows(cfg: TrainConfig) -> list[dict]:
    """All SFT rows of the run (a file from jobs.sft_data, or built from `data.build`)."""
    from reasonguard.sft import build_from_config, read_rows

    if cfg.data.sft_path is not None:
        return read_rows(cfg.data.sft_path)
    return build_from_config(cfg.data.build).rows


def _plain_row(row: dict) -> dict:
    """Ray Data hands nested columns back as numpy arrays: back to lists and dicts."""
    return {**row, "messages": [dict(m) for m in row["messages"]],
            "categories": list(row["categories"]) if row.get("categories") is not None else []}


def prepare_samples(rows: list[dict], tokenizer, cfg: TrainConfig, rank: int, world_size: int):
    """This rank's samples: rows sorted by key (an order no reader can change), sharded, encoded, packed."""
    from reasonguard.sft import encode_rows, pack_sequences
    from reasonguard.train.data import shard

    rows = sorted((_plain_row(r) for r in rows), key=lambda r: r["key"])
    encoded, counts = encode_rows(shard(rows, rank, world_size), tokenizer, cfg.data.max_seq_len)
    samples = pack_sequences(encoded, cfg.data.max_seq_len) if cfg.data.packing else encoded
    return samples, counts


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
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    del keep_alive
    return model


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


# ---------------------------------------------------------------- the step


def _all_reduce(values: list[float], op: str = "sum") -> list[float]:
    import torch
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return t.cpu().tolist()


def micro_loss_sum(backend, batch, device):
    """Summed cross-entropy of the next-token labels; logits are computed only where a label is."""
    import torch
    import torch.nn.functional as F

    ids = torch.tensor(batch.input_ids, device=device)
    next_labels = torch.tensor(batch.labels, device=device)[:, 1:]
    keep = (next_labels != -100).any(0).nonzero().squeeze(-1)
    kwargs: dict[str, Any] = {"input_ids": ids, "use_cache": False, "logits_to_keep": keep}
    if batch.attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(batch.attention_mask, device=device)
    if batch.position_ids is not None:
        kwargs["position_ids"] = torch.tensor(batch.position_ids, device=device)
    logits = backend.forward(**kwargs).logits
    targets = next_labels[:, keep]
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")


def train_step(backend, micro_batches, world_size: int, device) -> tuple[float, int]:
    """One optimizer step over this rank's micro-batches; (global mean token loss, global tokens)."""
    local_label_tokens = sum(b.n_label_tokens for b in micro_batches)
    local_tokens = sum(b.n_tokens for b in micro_batches)
    global_label_tokens, _ = _all_reduce([float(local_label_tokens), 0.0])
    scale = world_size * len(micro_batches) / max(global_label_tokens, 1.0)
    loss_sum = 0.0
    for k, batch in enumerate(micro_batches):
        with backend.accumulate(last=k == len(micro_batches) - 1):
            loss = micro_loss_sum(backend, batch, device)
            backend.backward(loss * scale)
        backend.micro_step()
        loss_sum += float(loss.detach())
    total_loss, total_tokens = _all_reduce([loss_sum, float(local_tokens)])
    return total_loss / max(global_label_tokens, 1.0), int(total_tokens)


# ---------------------------------------------------------------- the loop


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
    from reasonguard.train.data import collate, iter_steps, steps_per_epoch

    session.setup_distributed(cfg)
    torch.manual_seed(cfg.seed)
    device, rank, world = session.device(cfg), session.rank, session.world_size
    path = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    samples, counts = prepare_samples(session.rows(cfg), tokenizer, cfg, rank, world)
    accumulation = cfg.global_batch_size // (cfg.micro_batch_size * world)
    per_rank = cfg.micro_batch_size * accumulation
    smallest_shard = int(_all_reduce([float(len(samples))], op="min")[0])
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
