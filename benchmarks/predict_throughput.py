"""Predict throughput: the Ray Data + vLLM pipeline vs one `vllm.LLM.generate` call vs a per-item
transformers `generate` loop, on the same prompts and machine in one run; and the cost of
/no_think vs /think per item. Prints a table (the numbers in docs/benchmarks.md come from here).

    .venv/bin/python benchmarks/predict_throughput.py --model smollm2 --items 64 --hf-items 8

Wall times include each engine's start (model load) as well as generation; "gen" columns exclude it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--items", type=int, default=64, help="demo items (all splits)")
    parser.add_argument("--hf-items", type=int, default=8, help="items for the slow per-item transformers loop")
    parser.add_argument("--max-tokens-think", type=int, default=160)
    parser.add_argument("--max-tokens-no-think", type=int, default=24)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from reasonguard.datasets import load_demo
    from reasonguard.engines import EngineConfig, build_engine
    from reasonguard.engines.base import SamplingConfig
    from reasonguard.models import resolve_model
    from reasonguard.predict import predict_examples

    model = resolve_model(args.model)
    examples = load_demo()[: args.items]
    max_tokens = {"no_think": args.max_tokens_no_think, "think": args.max_tokens_think}
    sampling = {m: SamplingConfig(temperature=0.6, top_p=0.95, max_tokens=t, seed=None) for m, t in max_tokens.items()}
    results: list[dict] = []

    # 1. Ray Data + vLLM pipeline, one mode per run (engine actor start included).
    from pipelines.predict import run_predictions
    from reasonguard.config.common import PipelineSettings
    from pipelines.ray_utils import init_ray
    from reasonguard.io import read_parts

    init_ray(num_cpus=2)
    cfg = EngineConfig(kind="vllm", model=model, max_model_len=2048)
    for mode in ("no_think", "think"):
        out = tempfile.mkdtemp(prefix="bench-pipe-")
        start = time.perf_counter()
        run_predictions({"demo": examples}, [mode], 1, out, engine_config=cfg, sampling_by_mode=sampling,
                        pipeline=PipelineSettings(batch_size=16))
        wall = time.perf_counter() - start
        rows = read_parts(os.path.join(out, "predictions"))
        results.append(_row("ray data + vllm", mode, len(rows), wall, None, sum(r["output_tokens"] for r in rows)))
        shutil.rmtree(out, ignore_errors=True)
    import ray

    ray.shutdown()

    # 2. One process, one vllm.LLM, one generate call per mode.
    start = time.perf_counter()
    engine = build_engine(cfg)
    load = time.perf_counter() - start
    for mode in ("no_think", "think"):
        start = time.perf_counter()
        rows = predict_examples(engine, examples, mode, sampling[mode], batch_size=len(examples))
        gen = time.perf_counter() - start
        results.append(_row("vllm.LLM.generate", mode, len(rows), gen + load, gen, sum(r.output_tokens for r in rows)))
    engine.close()
    del engine

    # 3. transformers, one item at a time.
    start = time.perf_counter()
    hf = build_engine(EngineConfig(kind="transformers", model=model, device="cpu", batch_size=1))
    load = time.perf_counter() - start
    for mode in ("no_think", "think"):
        start = time.perf_counter()
        rows = predict_examples(hf, examples[: args.hf_items], mode, sampling[mode], batch_size=1)
        gen = time.perf_counter() - start
        results.append(_row("transformers per item", mode, len(rows), gen + load, gen, sum(r.output_tokens for r in rows)))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, model {args.model}, "
          f"max tokens {max_tokens}")
    print(f"{'path':24s} {'mode':9s} {'items':>5s} {'wall s':>8s} {'gen s':>8s} {'items/s':>8s} {'gen items/s':>11s} {'out tok/s':>9s} {'tok/item':>8s} {'s/item':>7s}")
    for r in results:
        print(f"{r['path']:24s} {r['mode']:9s} {r['items']:5d} {r['wall']:8.1f} {r['gen'] if r['gen'] is not None else float('nan'):8.1f} "
              f"{r['items_s']:8.2f} {r['gen_items_s']:11.2f} {r['tok_s']:9.1f} {r['tok_item']:8.1f} {r['s_item']:7.3f}")
    by = {(r["path"], r["mode"]): r for r in results}
    for mode in ("no_think", "think"):
        pipe, llm, hfr = by[("ray data + vllm", mode)], by[("vllm.LLM.generate", mode)], by[("transformers per item", mode)]
        print(f"[{mode}] pipeline / vllm.LLM (wall, incl. engine start): {pipe['items_s'] / llm['items_s']:.2f}x; "
              f"pipeline / transformers per item (wall): {pipe['items_s'] / hfr['items_s']:.1f}x; "
              f"pipeline / transformers per item (generation only): {pipe['items_s'] / hfr['gen_items_s']:.1f}x")
    for path in ("ray data + vllm", "vllm.LLM.generate"):
        nt, th = by[(path, "no_think")], by[(path, "think")]
        print(f"[{path}] think / no_think per item: tokens {th['tok_item'] / nt['tok_item']:.1f}x, "
              f"seconds {th['s_item'] / nt['s_item']:.1f}x")


def _row(path, mode, items, wall, gen, tokens) -> dict:
    gen_time = gen if gen is not None else wall
    return {"path": path, "mode": mode, "items": items, "wall": wall, "gen": gen, "items_s": items / wall,
            "gen_items_s": items / gen_time, "tok_s": tokens / gen_time, "tok_item": tokens / max(1, items),
            "s_item": gen_time / max(1, items)}


if __name__ == "__main__":
    main()
