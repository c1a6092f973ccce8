"""The training loop without Ray (one process), here also without DeepSpeed and with LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonguard.config import validate_config
from reasonguard.config.train import TrainConfig

from .conftest import base_config

pytestmark = pytest.mark.slow


def test_single_process_lora_run_resumes_and_exports_a_merged_model(sft_path, tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from jobs.train import train

    cfg = base_config(sft_path, tmp_path, "lora", launcher="local", deepspeed={"enabled": False}, global_batch_size=4,
                      micro_batch_size=2, learning_rate=1e-2, max_steps=3, scaling={"num_workers": 1},
                      lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    train(validate_config(TrainConfig, cfg))
    final = train(validate_config(TrainConfig, {**cfg, "max_steps": 5}))  # same run: resumes at step 3
    from reasonguard.run_identity import RunIdentityMismatch

    with pytest.raises(RunIdentityMismatch, match=r"learning_rate: 0.01 -> 0.02"):  # another run: not resumed
        train(validate_config(TrainConfig, {**cfg, "learning_rate": 2e-2}))
    summary = json.loads((tmp_path / "lora" / "train_summary.json").read_text())
    assert [h["step"] for h in summary["log_history"]] == [1, 2, 3, 4, 5]
    assert summary["losses"][-1] < summary["losses"][0]
    # The adapter, its optimizer state, the schedule and the data order come back: the resumed run's
    # losses are those of the same run without the stop (the schedule spans the epochs; max_steps only stops).
    train(validate_config(TrainConfig, {**cfg, "max_steps": 5, "run_name": "lora-ref", "output_dir": str(tmp_path / "lora-ref")}))
    reference = json.loads((tmp_path / "lora-ref" / "train_summary.json").read_text())
    assert summary["losses"] == pytest.approx(reference["losses"], rel=2e-3)
    adapter = Path(str(final) + "-adapter")
    assert (adapter / "adapter_config.json").exists() and not (final / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    q_merged = merged.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q_merged, base.model.layers[0].self_attn.q_proj.weight)  # the adapter is in the weights
    assert torch.equal(merged.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)

    # Shipped as the embedded guard is: the adapter in float16 with its fingerprints and training record,
    # then merged onto the base named by alias; the result equals the training run's own merge to fp16 rounding.
    from reasonguard.hygiene import read_fingerprints
    from reasonguard.models import prepare_embedded_guard, ship_adapter

    shipped = ship_adapter(tmp_path / "lora", tmp_path / "shipped", wall_s=12.5)
    assert json.loads((shipped / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    record = json.loads((shipped / "training.json").read_text())
    assert record["steps"] == 5 and record["wall_s"] == 12.5 and "lora:" in record["config"] and len(record["losses"]) == 5
    rebuilt = prepare_embedded_guard(shipped, tmp_path / "merged")
    assert read_fingerprints(rebuilt) == read_fingerprints(final) and read_fingerprints(rebuilt)
    again = AutoModelForCausalLM.from_pretrained(rebuilt, dtype=torch.float32)
    assert torch.allclose(again.model.layers[0].self_attn.q_proj.weight, q_merged, atol=1e-3)
    assert prepare_embedded_guard(shipped, tmp_path / "merged") == rebuilt  # cached: not merged twice


def test_zero3_single_process_saves_gathered_weights_and_resumes(sft_path, tmp_path):
    """ZeRO-3 (the GPU presets' stage) partitions weights: the HF export must gather them, and a
    resume must load the partitioned optimizer state."""
    import torch
    from transformers import AutoModelForCausalLM

    from jobs.train import train

    cfg = base_config(sft_path, tmp_path, "zero3", launcher="local", deepspeed={"zero_stage": 3}, global_batch_size=4,
                      micro_batch_size=4, learning_rate=1e-2, max_steps=2, scaling={"num_workers": 1})
    train(validate_config(TrainConfig, cfg))
    final = train(validate_config(TrainConfig, {**cfg, "max_steps": 3}))
    summary = json.loads((tmp_path / "zero3" / "train_summary.json").read_text())
    assert [h["step"] for h in summary["log_history"]] == [1, 2, 3]
    train(validate_config(TrainConfig, {**cfg, "max_steps": 3, "run_name": "zero3-ref", "output_dir": str(tmp_path / "zero3-ref")}))
    reference = json.loads((tmp_path / "zero3-ref" / "train_summary.json").read_text())
    assert summary["losses"] == pytest.approx(reference["losses"], rel=2e-3)  # the partitioned state came back whole
    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    embed = model.get_input_embeddings().weight
    assert embed.shape[0] > 49000 and torch.isfinite(embed).all() and embed.abs().sum() > 0  # gathered, not empty shards


def test_lora_init_adapter_continues_the_trained_adapter(sft_path, tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from jobs.train import train

    cfg = base_config(sft_path, tmp_path, "first", launcher="local", deepspeed={"enabled": False}, global_batch_size=4,
                      micro_batch_size=2, learning_rate=1e-2, max_steps=3, scaling={"num_workers": 1},
                      lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    first = train(validate_config(TrainConfig, cfg))
    adapter = str(first) + "-adapter"
    from reasonguard.hygiene import read_fingerprints, write_fingerprints

    assert read_fingerprints(adapter) == read_fingerprints(first)  # the adapter alone carries them too
    write_fingerprints(read_fingerprints(adapter) | {"an-earlier-round"}, adapter)  # as if trained on more
    # A next run that starts from that adapter (at a learning rate too small to move it) exports the same weights,
    # and its first loss is the trained adapter's, not a fresh one's.
    cont = {**cfg, "run_name": "cont", "output_dir": str(tmp_path / "cont"), "learning_rate": 1e-12, "max_steps": 1,
            "lora": {**cfg["lora"], "init_adapter": adapter}}
    final = train(validate_config(TrainConfig, cont))
    merged, expected = (AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32) for p in (final, first))
    q = [m.model.layers[0].self_attn.q_proj.weight for m in (merged, expected)]
    assert torch.allclose(q[0], q[1], atol=1e-6)
    # The continued guard remembers what the adapter it continued was trained on, as well as its own rows.
    assert read_fingerprints(first) < read_fingerprints(final) and "an-earlier-round" in read_fingerprints(final)
    losses = [json.loads((tmp_path / run / "train_summary.json").read_text())["losses"] for run in ("first", "cont")]
    assert losses[1][0] < losses[0][0]
    # Shipped, the continued adapter's record names what it continued (its record, where it has one).
    from reasonguard.models import ship_adapter

    shipped = ship_adapter(tmp_path / "first", tmp_path / "ship-first", wall_s=1.0)
    cont_shipped = ship_adapter(tmp_path / "cont", tmp_path / "ship-cont", wall_s=2.0)
    assert json.loads((cont_shipped / "training.json").read_text())["continued_from"] == {"adapter": adapter}
    again = {**cont, "run_name": "cont2", "output_dir": str(tmp_path / "cont2"), "lora": {**cfg["lora"], "init_adapter": str(shipped)}}
    train(validate_config(TrainConfig, again))
    record = json.loads((ship_adapter(tmp_path / "cont2", tmp_path / "ship-cont2") / "training.json").read_text())
    assert record["continued_from"]["wall_s"] == 1.0 and record["continued_from"]["steps"] == 3
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        train(validate_config(TrainConfig, {**cont, "run_name": "bad", "output_dir": str(tmp_path / "bad"),
                                            "lora": {**cfg["lora"], "init_adapter": str(tmp_path)}}))
