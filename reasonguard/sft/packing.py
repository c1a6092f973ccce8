"""Packing encoded examples into fixed-length sequences (best-fit decreasing, position ids restart
per example)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

from reasonguard.sft.encode import IGNORE_INDEX, EncodedExample


@dataclass(frozen=True)
class PackedSequence:
    """Several examples in one sequence; position ids restart at 0 for each (transformers then
    masks attention across examples when no attention mask is passed)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    keys: tuple[str, ...]


def pack_sequences(examples: Sequence[EncodedExample], max_len: int) -> list[PackedSequence]:
    """Best-fit decreasing into bins of `max_len` tokens; deterministic for a given input order."""
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, bin index), sorted
    for i in order:
        n = len(examples[i].input_ids)
        if n > max_len:
            raise ValueError(f"example {examples[i].key} has {n} tokens > max_len {max_len}")
        pos = bisect.bisect_left(free, (n, -1))
        if pos < len(free):
            room, b = free.pop(pos)
        else:
            room, b = max_len, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    packed = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in sorted(members):
            ex = examples[i]
            ids += ex.input_ids
            labels += [IGNORE_INDEX] + ex.labels[1:]  # never learn an example's first token from the previous one
            positions += list(range(len(ex.input_ids)))
        packed.append(PackedSequence(ids, labels, positions, tuple(examples[i].key for i in sorted(members))))
    return packed
