"""This rank's training samples and deterministic per-worker batches: the same seed, world size and batch settings give the same
global batches, which makes resume exact and micro-batch x accumulation interchangeable."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

from reasonguard.config.train import TrainConfig
from reasonguard.sft import IGNORE_INDEX, EncodedExample, PackedSequence

Sample = EncodedExample | PackedSequence


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Every world_size-th item from `rank`: a fixed split that needs no coordination."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    return list(items[rank::world_size])


def steps_per_epoch(min_shard_len: int, per_rank_batch: int) -> int:
    """Optimizer steps per epoch: every rank must take the same number (the smallest shard decides)."""
    return min_shard_len // per_rank_batch


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def step_micro_batches(items: Sequence[Sample], epoch: int, step_in_epoch: int, seed: int, micro: int,
                       accumulation: int) -> list[list[Sample]]:
    """The micro-batches of one optimizer step on one rank: `accumulation` lists of `micro` samples."""
    per_step = micro * accumulation
    order = epoch_order(len(items), epoch, seed)[step_in_epoch * per_step:(step_in_epoch + 1) * per_step]
    if len(order) < per_step:
        raise IndexError(f"step {step_in_epoch} of epoch {epoch} runs past the shard ({len(items)} samples)")
    return [[items[i] for i in order[k * micro:(k + 1) * micro]] for k in range(accumulation)]


def iter_steps(items: Sequence[Sample], n_steps: int, epoch: int, start: int, seed: int, micro: int,
               accumulation: int) -> Iterator[tuple[int, list[list[Sample]]]]:
    for s in range(start, n_steps):
        yield s, step_micro_batches(items, epoch, s, seed, micro, accumulation)


@dataclass(frozen=True)
class Batch:
    """Padded lists (tensors are made by the loop): right padding, labels -100 on padding."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    attention_mask: list[list[int]] | None
    position_ids: list[list[int]] | None
    n_tokens: int  # real (unpadded) tokens

    @property
    def n_label_tokens(self) -> int:
        """Tokens that carry loss after the causal shift (a label at position 0 predicts nothing)."""
        return sum(1 for row in self.labels for x in row[1:] if x != IGNORE_INDEX)


def collate(samples: Sequence[Sample], pad_id: int) -> Batch:
    width = max(len(s.input_ids) for s in samples)
    n_tokens = sum(len(s.input_ids) for s in samples)
    ids = [list(s.input_ids) + [pad_id] * (width - len(s.input_ids)) for s in samples]
    labels = [list(s.labels) + [IGNORE_INDEX] * (width - len(s.labels)) for s in samples]
    if isinstance(samples[0], PackedSequence):
        # No attention mask: transformers reads example boundaries from the restarting position ids.
        positions = [list(s.position_ids) + list(range(s.position_ids[-1] + 1, s.position_ids[-1] + 1 + width - len(s.input_ids)))
                     for s in samples]
        return Batch(ids, labels, None, positions, n_tokens)
    mask = [[1] * len(s.input_ids) + [0] * (width - len(s.input_ids)) for s in samples]
    return Batch(ids, labels, mask, None, n_tokens)


# ---------------------------------------------------------------- a run's rows, this rank's samples


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

    rows = sorted((_plain_row(r) for r in rows), key=lambda r: r["key"])
    encoded, counts = encode_rows(shard(rows, rank, world_size), tokenizer, cfg.data.max_seq_len)
    samples = pack_sequences(encoded, cfg.data.max_seq_len) if cfg.data.packing else encoded
    return samples, counts
