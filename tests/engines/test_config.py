"""EngineConfig validation and build_engine (the factory behind every job's `engine:` section)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from reasonguard.config import ConfigError, validate_config
from reasonguard.engines import EngineConfig, build_engine


def test_every_field_has_a_description():
    missing = [name for name, f in EngineConfig.model_fields.items() if not f.description]
    assert missing == []


def test_defaults_and_immutability():
    cfg = EngineConfig(kind="vllm", model="tiny")
    assert (cfg.dtype, cfg.tensor_parallel_size, cfg.enforce_eager, cfg.max_model_len) == ("auto", 1, None, None)
    with pytest.raises(ValidationError):
        cfg.model = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kind": "fake", "model": "m"}, "kind"),
        ({"kind": "vllm", "model": ""}, "model"),
        ({"kind": "vllm", "model": "m", "tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"kind": "vllm", "model": "m", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"kind": "vllm", "model": "m", "dtype": "int4"}, "dtype"),
        ({"kind": "vllm", "model": "m", "batch_size": 8}, "batch_size"),
        ({"kind": "transformers", "model": "m", "max_model_len": 1024}, "max_model_len"),
        ({"kind": "transformers", "model": "m", "batch_size": 0}, "batch_size"),
        ({"kind": "openai", "model": "m"}, "needs base_url"),
        ({"kind": "openai", "model": "m", "base_url": "localhost:8000"}, "http"),
        ({"kind": "openai", "model": "m", "base_url": "http://h", "dtype": "bfloat16"}, "dtype"),
        ({"kind": "openai", "model": "m", "base_url": "http://h", "max_concurrency": 0}, "max_concurrency"),
        ({"kind": "vllm", "model": "m", "typo_field": 1}, "typo_field"),
    ],
)
def test_bad_configs_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(EngineConfig, data, "engine.yaml")


def test_build_openai_engine_without_network(monkeypatch):
    monkeypatch.setenv("MY_TEACHER_KEY", "sk-test")
    engine = build_engine(
        {"kind": "openai", "model": "teacher", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "MY_TEACHER_KEY",
         "max_concurrency": 3, "timeout_s": 5, "max_retries": 1}
    )
    assert engine.model_id == "teacher"
    assert engine.url == "http://127.0.0.1:9/v1/chat/completions"
    assert (engine.max_concurrency, engine.timeout_s, engine.max_retries) == (3, 5, 1)
    assert "sk-test" not in repr(engine)


def test_build_openai_engine_with_unset_key_env_fails(monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(ValueError, match="NOT_SET_KEY"):
        build_engine({"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9", "api_key_env": "NOT_SET_KEY"})


def test_build_transformers_engine_resolves_aliases():
    engine = build_engine(EngineConfig(kind="transformers", model="tiny", device="cpu", batch_size=2))
    try:
        assert engine.model_id == "tiny" and engine.batch_size == 2 and engine.device == "cpu"
    finally:
        engine.close()


def test_importing_engines_is_light():
    code = (
        "import sys, reasonguard.engines as e\n"
        "cfg = e.EngineConfig(kind='vllm', model='tiny')\n"
        "print([m for m in ('vllm', 'torch', 'transformers', 'httpx') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
