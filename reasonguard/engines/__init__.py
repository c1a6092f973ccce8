"""Inference engines behind one interface (`Engine`): vLLM, transformers, OpenAI-compatible HTTP.

Importing this package is light: vLLM, torch and transformers are imported only when an
engine of that kind is built (`build_engine` or the engine class's module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from reasonguard.engines.base import AsyncEngine, Engine, FakeEngine, Generation, Messages, RequestOutput, SamplingConfig
from reasonguard.engines.config import EngineConfig

if TYPE_CHECKING:  # pragma: no cover
    from reasonguard.engines.hf_engine import TransformersEngine
    from reasonguard.engines.openai_engine import OpenAIChatEngine
    from reasonguard.engines.async_vllm import AsyncVLLMEngine
    from reasonguard.engines.vllm_engine import VLLMEngine

__all__ = [
    "AsyncEngine", "AsyncVLLMEngine", "Engine", "EngineConfig", "FakeEngine", "Generation", "Messages", "OpenAIChatEngine", "RequestOutput",
    "SamplingConfig", "TransformersEngine", "VLLMEngine", "build_engine",
]

_LAZY = {
    "VLLMEngine": "reasonguard.engines.vllm_engine",
    "TransformersEngine": "reasonguard.engines.hf_engine",
    "OpenAIChatEngine": "reasonguard.engines.openai_engine",
    "AsyncVLLMEngine": "reasonguard.engines.async_vllm",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_engine(spec: EngineConfig | Mapping[str, Any], asynchronous: bool = False) -> Engine:
    """An engine from its config (a dict is validated first). Local models go through
    `resolve_model`, so aliases such as 'tiny' and 'smollm2' work; `model_id` stays as written.
    `asynchronous` (kind vllm): an AsyncVLLMEngine (`AsyncEngine`), with the same settings."""
    import os

    config = spec if isinstance(spec, EngineConfig) else EngineConfig.model_validate(dict(spec))
    if asynchronous and config.kind != "vllm":
        raise ValueError(f"an asynchronous engine needs kind 'vllm', not {config.kind!r}")
    if config.kind == "openai":
        from reasonguard.engines.openai_engine import OpenAIChatEngine

        api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if config.api_key_env and not api_key:
            raise ValueError(f"environment variable {config.api_key_env} (api_key_env) is not set")
        return OpenAIChatEngine(
            config.base_url, config.model, api_key, max_concurrency=config.max_concurrency, timeout_s=config.timeout_s,
            max_retries=config.max_retries, backoff_base_s=config.backoff_base_s,
        )
    from reasonguard.models import resolve_model

    path = resolve_model(config.model)
    if config.kind == "transformers":
        from reasonguard.engines.hf_engine import TransformersEngine

        return TransformersEngine(path, device=config.device, dtype=config.dtype, batch_size=config.batch_size, model_id=config.model)
    if asynchronous:
        from reasonguard.engines.async_vllm import AsyncVLLMEngine as engine_class
    else:
        from reasonguard.engines.vllm_engine import VLLMEngine as engine_class

    from reasonguard.engines.vllm_engine import engine_settings

    return engine_class(path, model_id=config.model, **engine_settings(config))
