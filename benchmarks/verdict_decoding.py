"""The cost of verdict-safe decoding: free no_think generation vs the constrained verdict vs score
mode (constrained, greedy: the verdict and its P(harmful) in one short decode), and think mode
free vs constrained at the same budget, on the same items with one vLLM engine, in one run.

    .venv/bin/python benchmarks/verdict_decoding.py --model smollm2 --items 64 --reps 3

Variants are interleaved and repeated (after one warm-up pass); the table gives the median wall
time of generation (engine start excluded), items per second, output tokens per item, the share
of answers that parse and the share with a probability, and each variant's time relative to free
no_think generation. The numbers in docs/benchmarks.md come from here.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description="Cost of verdict-safe decoding and score mode vs free generation.")
    for flag, default in (("--model", "smollm2"), ("--items", 64), ("--reps", 3), ("--no-think-tokens", 24), ("--think-tokens", 128)):
        parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from reasonguard.datasets import load_demo
    from reasonguard.engines.base import SamplingConfig
    from reasonguard.engines.vllm_engine import VLLMEngine
    from reasonguard.models import resolve_model
    from reasonguard.predict import to_request, verdict_spec
    from reasonguard.verdict import parse_verdict

    model = resolve_model(args.model)
    examples = load_demo()[: args.items]
    start = time.perf_counter()
    engine = VLLMEngine(model, max_model_len=2048)
    startup = time.perf_counter() - start
    sampled = dict(temperature=0.6, top_p=0.95)
    variants = {
        "no_think free": ("no_think", False, SamplingConfig(max_tokens=args.no_think_tokens, **sampled)),
        "no_think constrained": ("no_think", True, SamplingConfig(max_tokens=args.no_think_tokens, **sampled)),
        "score mode (constrained, greedy)": ("no_think", True, SamplingConfig(temperature=0, max_tokens=args.no_think_tokens)),
        "think free": ("think", False, SamplingConfig(max_tokens=args.think_tokens, **sampled)),
        "think constrained": ("think", True, SamplingConfig(max_tokens=args.think_tokens, **sampled)),
    }

    def run(name: str) -> dict:
        mode, constrained, sampling = variants[name]
        requests = [to_request(ex, mode) for ex in examples]
        verdicts = [verdict_spec(ex, mode) for ex in examples] if constrained else None
        t0 = time.perf_counter()
        outs = engine.generate(requests, sampling, verdicts)
        wall = time.perf_counter() - t0
        gens = [(ex, o.generations[0]) for ex, o in zip(examples, outs)]
        parsed = sum(parse_verdict(g.text, expect_response=ex.response is not None).parsed_ok for ex, g in gens)
        scored = sum(g.verdict_scores is not None and g.verdict_scores.prompt is not None for _, g in gens)
        return {"wall": wall, "tokens": sum(g.output_tokens for _, g in gens) / len(gens), "parsed": parsed / len(gens),
                "scored": scored / len(gens)}

    for name in variants:  # warm-up, not counted
        run(name)
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for rep in range(args.reps):
        order = list(variants) if rep % 2 == 0 else list(reversed(variants))  # interleaved, order alternates
        for name in order:
            results[name].append(run(name))
    engine.close()

    base = statistics.median(r["wall"] for r in results["no_think free"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}; model {args.model}; "
          f"{len(examples)} items; {args.reps} reps (median, range); engine start {startup:.1f} s\n")
    print("| variant | wall s (median, range) | items/s | out tokens/item | parsed | with P(harmful) | time vs free no_think |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        walls = [r["wall"] for r in runs]
        med = statistics.median(walls)
        print(f"| {name} | {med:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {len(examples) / med:.1f} | "
              f"{statistics.median(r['tokens'] for r in runs):.1f} | {100 * statistics.median(r['parsed'] for r in runs):.0f}% | "
              f"{100 * statistics.median(r['scored'] for r in runs):.0f}% | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
