"""Pure pieces of the trainer: config validation, sharding, deterministic batches, collation, schedule."""

from __future__ import annotations

import pytest

from reasonguard.config import ConfigError, validate_config
from reasonguard.config.train import TrainConfig
from reasonguard.sft import IGNORE_INDEX, EncodedExample, PackedSequence
from reasonguard.train.backend import cosine_with_warmup, schedule_fn
from reasonguard.train.data import collate, epoch_order, shard, step_micro_batches, steps_per_epoch

BASE = {"model": "tiny", "data": {"sft_path": "x.parquet"}}


def _cfg(**kw) -> TrainConfig:
    return validate_config(TrainConfig, {**BASE, **kw})


def test_paper_defaults():
    cfg = _cfg()
    assert (cfg.global_batch_size, cfg.epochs, cfg.learning_rate) == (32, 5, 1e-6)
    assert cfg.deepspeed.zero_stage == 2 and cfg.lora is None and cfg.precision == "auto"
    assert cfg.gradient_accumulation_steps == 16  # 32 / (1 x 2 workers)


def test_config_errors():
    with pytest.raises(ConfigError, match="multiple of micro_batch_size"):
        _cfg(global_batch_size=10, micro_batch_size=4)
    with pytest.raises(ConfigError, match="exactly one"):
        validate_config(TrainConfig, {"model": "tiny", "data": {}})
    with pytest.raises(ConfigError, match="offload_params"):
        _cfg(deepspeed={"zero_stage": 2, "offload_params": True})
    with pytest.raises(ConfigError, match="fault_injection.rank"):
        _cfg(fault_injection={"rank": 2, "at_step": 3})
    with pytest.raises(ConfigError, match="epoch"):
        _cfg(epoch=3)  # typo: unknown keys fail


def _ex(i: int, n: int = 3) -> EncodedExample:
    return EncodedExample(f"k{i}", list(range(1, n + 1)), [IGNORE_INDEX] + list(range(2, n + 1)))


def test_shards_cover_everything_once():
    items = list(range(11))
    shards = [shard(items, r, 3) for r in range(3)]
    assert sorted(x for s in shards for x in s) == items
    assert steps_per_epoch(min(map(len, shards)), 2) == 1
    with pytest.raises(ValueError):
        shard(items, 3, 3)


def test_epoch_order_is_seeded_and_changes_per_epoch():
    assert epoch_order(20, 0, 7) == epoch_order(20, 0, 7)
    assert epoch_order(20, 0, 7) != epoch_order(20, 1, 7)
    assert sorted(epoch_order(20, 3, 7)) == list(range(20))


def test_micro_by_accumulation_splits_cover_the_same_examples():
    items = [_ex(i) for i in range(16)]
    for step in range(4):
        one_by_four = step_micro_batches(items, 2, step, 0, micro=1, accumulation=4)
        four_by_one = step_micro_batches(items, 2, step, 0, micro=4, accumulation=1)
        assert [len(m) for m in one_by_four] == [1, 1, 1, 1] and [len(m) for m in four_by_one] == [4]
        assert [e.key for m in one_by_four for e in m] == [e.key for e in four_by_one[0]]
    with pytest.raises(IndexError):
        step_micro_batches(items, 0, 4, 0, micro=4, accumulation=1)


def test_collate_pads_right_and_masks_padding():
    batch = collate([_ex(0, 3), _ex(1, 5)], pad_id=0)
    assert batch.input_ids == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]]
    assert batch.attention_mask == [[1, 1, 1, 0, 0], [1] * 5] and batch.position_ids is None
    assert batch.labels[0] == [IGNORE_INDEX, 2, 3, IGNORE_INDEX, IGNORE_INDEX]
    assert batch.n_label_tokens == 2 + 4 and batch.n_tokens == 8


def test_collate_packed_uses_restarting_positions_and_no_mask():
    packed = PackedSequence([5, 6, 7, 8, 9], [IGNORE_INDEX, 6, IGNORE_INDEX, 8, 9], [0, 1, 0, 1, 2], ("a", "b"))
    short = PackedSequence([1, 2], [IGNORE_INDEX, 2], [0, 1], ("c",))
    batch = collate([packed, short], pad_id=0)
    assert batch.attention_mask is None
    assert batch.position_ids == [[0, 1, 0, 1, 2], [0, 1, 2, 3, 4]]  # padding continues the last example
    assert batch.labels[1] == [IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX] and batch.n_tokens == 7


def test_cosine_schedule_with_warmup():
    f = [cosine_with_warmup(s, 2, 10) for s in range(10)]
    assert f[0] == 0.5 and f[1] == 1.0 and f[2] == 1.0
    assert all(a >= b for a, b in zip(f[2:], f[3:])) and 0 < f[-1] < 0.05
    assert cosine_with_warmup(10, 2, 10, min_ratio=0.1) == pytest.approx(0.1)
    assert schedule_fn(100, 0.0, 0.0)(0) == 1.0  # no warmup: the first step uses the peak rate


def test_training_modules_import_light():
    """The SFT builder and the trainer's modules import no Ray, DeepSpeed, torch or transformers at import time."""
    import subprocess
    import sys

    code = ("import sys, reasonguard.sft, reasonguard.config.train, reasonguard.train.loop, reasonguard.train.backend, "
            "reasonguard.train.data, reasonguard.train.model, reasonguard.train.step, reasonguard.train.local_session, "
            "reasonguard.train.checkpoint, reasonguard.train.deepspeed_config, jobs.train, jobs.sft_data\n"
            "print([m for m in ('ray', 'vllm', 'deepspeed', 'torch', 'transformers', 'peft') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported: {out}"
