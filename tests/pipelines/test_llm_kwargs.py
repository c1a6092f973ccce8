"""vLLM engine kwargs of the Ray Data stages: CPU or GPU follows the actors' GPU request, not the
driver's hardware (a KubeRay head pod has no GPU while its engine actors do)."""

from __future__ import annotations

import json

import pytest

from pipelines.llm import vllm_engine_kwargs
from reasonguard.engines import EngineConfig
from reasonguard.engines.vllm_engine import default_cpu_dtype


def test_gpu_actors_keep_the_configured_dtype_and_cuda_graphs(tmp_path):
    kwargs = vllm_engine_kwargs(EngineConfig(kind="vllm", model="m", tensor_parallel_size=4), str(tmp_path), on_gpu=True)
    assert kwargs["dtype"] == "auto" and kwargs["enforce_eager"] is False
    assert kwargs["tensor_parallel_size"] == 4 and "gpu_memory_utilization" in kwargs


def test_cpu_actors_get_the_vllm_cpu_defaults(tmp_path):
    kwargs = vllm_engine_kwargs(EngineConfig(kind="vllm", model="m"), str(tmp_path), on_gpu=False)
    assert kwargs["dtype"] == default_cpu_dtype() and kwargs["enforce_eager"] is True
    assert "gpu_memory_utilization" not in kwargs


def test_cpu_actors_reject_a_head_size_vllm_cpu_lacks_before_starting(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 48, "num_attention_heads": 3}))  # head 16
    with pytest.raises(ValueError, match="head size 16"):
        vllm_engine_kwargs(EngineConfig(kind="vllm", model="m"), str(tmp_path), on_gpu=False)


def test_every_path_gets_the_same_pinned_scheduler_and_prefix_cache(tmp_path):
    """vLLM's own defaults differ by entry point (LLM 4096 tokens / 256 sequences on CPU, ray.data.llm
    2048 / 128); the kwargs name them, so both paths schedule alike."""
    cpu = vllm_engine_kwargs(EngineConfig(kind="vllm", model="m"), str(tmp_path), on_gpu=False)
    assert (cpu["max_num_seqs"], cpu["max_num_batched_tokens"], cpu["enable_prefix_caching"], cpu["block_size"]) == (256, 4096, True, 32)
    gpu = vllm_engine_kwargs(EngineConfig(kind="vllm", model="m"), str(tmp_path), on_gpu=True)
    assert (gpu["max_num_seqs"], gpu["max_num_batched_tokens"]) == (256, 8192) and "block_size" not in gpu


def test_configured_scheduler_settings_win_and_engine_kwargs_win_over_them(tmp_path):
    cfg = EngineConfig(kind="vllm", model="m", max_num_seqs=8, max_num_batched_tokens=1024, enable_prefix_caching=False,
                       block_size=64, engine_kwargs={"max_num_seqs": 4})
    kwargs = vllm_engine_kwargs(cfg, str(tmp_path), on_gpu=False)
    assert (kwargs["max_num_seqs"], kwargs["max_num_batched_tokens"], kwargs["enable_prefix_caching"], kwargs["block_size"]) == (4, 1024, False, 64)


def test_scheduler_fields_belong_to_vllm_only():
    with pytest.raises(ValueError, match="max_num_seqs"):
        EngineConfig(kind="transformers", model="m", max_num_seqs=4)
