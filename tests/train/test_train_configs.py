"""The shipped training configs validate, build a DeepSpeed config, and say what the issue promised."""

from __future__ import annotations

import yaml

from reasonguard.config import load_config
from reasonguard.config.sft_data import SftDataConfig
from reasonguard.config.train import TrainConfig
from reasonguard.train.model import ds_config_of, precision_of


def _load(repo_root, name: str) -> TrainConfig:
    return load_config(repo_root / "cluster" / "configs" / name, TrainConfig)


def test_local_config_is_two_cpu_workers_zero2_fp32(repo_root):
    cfg = _load(repo_root, "train_local.yaml")
    assert cfg.model == "smollm2" and cfg.scaling.num_workers == 2 and not cfg.scaling.use_gpu
    assert cfg.deepspeed.enabled and cfg.deepspeed.zero_stage == 2 and precision_of(cfg) == "fp32"
    ds = ds_config_of(cfg, cfg.scaling.num_workers, precision_of(cfg))
    assert ds["train_batch_size"] == 8 and ds["gradient_accumulation_steps"] == 4


def test_gpu_presets_are_eight_gpus_zero3_bf16_paper_defaults(repo_root):
    models = {}
    for name in ("train_gemma3_4b_gpu.yaml", "train_llama31_8b_gpu.yaml", "train_gpu.yaml"):
        cfg = _load(repo_root, name)
        models[name] = cfg.model
        assert cfg.scaling.num_workers == 8 and cfg.scaling.use_gpu and precision_of(cfg) == "bf16"
        assert (cfg.global_batch_size, cfg.epochs, cfg.learning_rate, cfg.lora) == (32, 5, 1e-6, None)
        ds = ds_config_of(cfg, 8, "bf16")
        assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"]
        # Independent expectations: 32 = micro 1 x accumulation 4 x 8 GPUs; ZeRO-3, bf16, no fp16.
        assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (32, 1, 4)
        assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"] == {"enabled": True}
        assert not ds.get("fp16", {}).get("enabled", False)
    assert models == {"train_gemma3_4b_gpu.yaml": "google/gemma-3-4b-it", "train_llama31_8b_gpu.yaml": "meta-llama/Llama-3.1-8B-Instruct",
                      "train_gpu.yaml": "google/gemma-3-4b-it"}


def test_kuberay_default_config_equals_the_gemma_preset(repo_root):
    folder = repo_root / "cluster" / "configs"
    assert yaml.safe_load((folder / "train_gpu.yaml").read_text()) == yaml.safe_load((folder / "train_gemma3_4b_gpu.yaml").read_text())


def test_sft_data_local_config(repo_root):
    cfg = load_config(repo_root / "cluster" / "configs" / "sft_data_local.yaml", SftDataConfig)
    assert cfg.mode == "dual" and cfg.budget == "full" and cfg.traces
    assert _load(repo_root, "train_local.yaml").data.sft_path == cfg.output


def test_ray_train_workers_get_local_model_folders_as_absolute_paths(repo_root, tmp_path, monkeypatch):
    """A worker runs in its own directory: `outputs/train_local/final` relative to the driver would not
    exist there and transformers would take it for a hub id (found running the local chain's mining)."""
    from pipelines.train import for_workers

    (tmp_path / "outputs/guard/final").mkdir(parents=True)
    (tmp_path / "adapter").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = _load(repo_root, "train_local.yaml").model_copy(update={"model": "outputs/guard/final"})
    assert for_workers(cfg).model == str(tmp_path / "outputs/guard/final")
    assert cfg.model == "outputs/guard/final"  # the driver's config (identity, records) is left as written
    for ref in ("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", "outputs/missing"):  # aliases, hub ids: as they are
        assert for_workers(cfg.model_copy(update={"model": ref})).model == ref
    lora = TrainConfig.model_validate({**cfg.model_dump(mode="json"), "lora": {"init_adapter": "adapter"}})
    assert for_workers(lora).lora.init_adapter == str(tmp_path / "adapter")
