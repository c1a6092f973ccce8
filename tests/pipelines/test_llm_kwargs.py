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
