"""Training throughput: Ray Train + DeepSpeed vs the same loop without Ray and DeepSpeed, one run.

    python benchmarks/train_throughput.py                       # SmolLM2-135M, 2 CPU cores
    python benchmarks/train_throughput.py --model tiny --steps 8
    python benchmarks/train_throughput.py --gpu --random-llama-1b --seq 2048 --micro 8 --workers 1 --peak-tflops 989

Same model, same SFT rows, same global batch and micro-batch, same loop (reasonguard.train.loop);
variants:
  plain      one process, plain torch (AdamW, accumulation), all cores to torch's threads
  ds-local   one process, DeepSpeed ZeRO-2 (no Ray)
  ray-ds     Ray Train TorchTrainer, `--workers` workers (1 CPU each, or 1 GPU each), DeepSpeed ZeRO-2
Tokens/s counts real (unpadded) tokens of the optimizer steps after the first (warm-up) step,
excluding start-up and checkpoints; the start-to-finish wall time is printed too. With
`--peak-tflops`, MFU = 6 x parameters x tokens/s / (peak x devices), attention FLOPs left out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_rows(n_rows: int, policy=None) -> list[dict]:
    """Demo items in both modes with short fixed traces, repeated (new keys) up to n_rows; `policy`
    (a category list or free text) instead of the 22-category taxonomy makes shorter rows."""
    from reasonguard.datasets import load_demo
    from reasonguard.sft import SourceItem, build_sft_rows

    reasons = {"harmful": "The request could hurt people.", "unharmful": "The request is ordinary and safe."}
    items = [SourceItem(e, reasons[e.prompt_harm_label], "traces") for e in load_demo()]
    base = build_sft_rows(items, mode="dual", duplicate=True, seed=0, policy=policy).rows
    rows = []
    while len(rows) < n_rows:
        for r in base[: n_rows - len(rows)]:
            rows.append({**r, "key": f"{r['key']}#{len(rows)}"})
    return rows


def random_llama_1b(target: Path) -> str:
    """A random-init Llama of ~1.2B parameters (Llama-3.2-1B shape) with the SmolLM2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from reasonguard.models import build_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(str(build_tiny_model()))
    config = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


def n_params(model_path: str) -> tuple[int, dict]:
    import json as _json

    cfg = _json.loads((Path(model_path) / "config.json").read_text())
    h, layers, v, inter = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * (h // cfg["num_attention_heads"])
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    return layers * per_layer + v * h, cfg


def variant_config(name: str, args, sft_path: str, model: str, out: Path) -> dict:
    cfg = {
        "model": model, "data": {"sft_path": sft_path, "max_seq_len": args.seq, "packing": args.packing},
        "output_dir": str(out / name), "run_name": name, "storage_path": str(out / "ray"), "epochs": 100,
        "max_steps": args.steps, "global_batch_size": args.micro * args.accumulation * args.workers,
        "micro_batch_size": args.micro, "learning_rate": 1e-5, "warmup_ratio": 0.0,
        "precision": "bf16" if args.gpu else "fp32", "checkpoint": {"num_to_keep": 1}, "max_failures": 0,
        "scaling": {"num_workers": args.workers, "use_gpu": args.gpu, "cpus_per_worker": 1},
        "ray": {"num_cpus": args.ray_cpus},
    }
    if getattr(args, "zero_stage", None) is not None:
        cfg["deepspeed"] = {"zero_stage": args.zero_stage}
    if name == "plain":
        # One process holds the whole global batch: accumulation x workers steps of `micro`.
        cfg.update(launcher="local", deepspeed={"enabled": False}, scaling={**cfg["scaling"], "num_workers": 1})
    elif name == "ds-local":
        cfg.update(launcher="local", scaling={**cfg["scaling"], "num_workers": 1})
    return cfg


def run_variant(name: str, args, sft_path: str, model: str, out: Path) -> dict:
    from jobs.train import train
    from reasonguard.config import validate_config
    from reasonguard.config.train import TrainConfig

    cfg = validate_config(TrainConfig, variant_config(name, args, sft_path, model, out))
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    history = json.loads((out / name / "train_summary.json").read_text())["log_history"][1:]  # skip warm-up step
    tokens = sum(h["step_tokens"] for h in history)
    seconds = sum(h["seconds"] for h in history)
    return {"variant": name, "steps_timed": len(history), "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds else float("nan"), "wall_s": wall,
            "final_loss": history[-1]["loss"] if history else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="alias, path or hub id (default smollm2)")
    parser.add_argument("--random-llama-1b", action="store_true", help="benchmark a random-init 1.2B Llama instead")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per variant (the first is not timed)")
    parser.add_argument("--micro", type=int, default=1, help="micro-batch per worker")
    parser.add_argument("--accumulation", type=int, default=2, help="accumulation steps of the Ray run")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    parser.add_argument("--seq", type=int, default=1024, help="max sequence length")
    parser.add_argument("--packing", action="store_true", help="pack examples into --seq tokens")
    parser.add_argument("--gpu", action="store_true", help="GPU workers, bf16")
    parser.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="per-device peak for MFU (H100 bf16 dense: 989)")
    parser.add_argument("--variants", default="plain,ds-local,ray-ds")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from reasonguard.models import resolve_model
    from reasonguard.sft import write_rows

    out = Path(tempfile.mkdtemp(prefix="rg-train-bench-"))
    model = random_llama_1b(out / "llama-1b") if args.random_llama_1b else resolve_model(args.model)
    global_batch = args.micro * args.accumulation * args.workers
    sft_path = write_rows(build_rows(max(256, global_batch * (args.steps + 1) * 2)), str(out / "sft.parquet"))
    params, _ = n_params(model)
    import torch

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"cuda {torch.cuda.get_device_name(0) if args.gpu and torch.cuda.is_available() else 'none'}")
    print(f"model {args.model if not args.random_llama_1b else 'random Llama 1.2B'} ({params / 1e6:.0f}M params), "
          f"global batch {global_batch} (micro {args.micro}), seq <= {args.seq}, packing {args.packing}, {args.steps} steps")
    results = []
    for name in args.variants.split(","):
        result = run_variant(name.strip(), args, sft_path, model, out)
        results.append(result)
        print(json.dumps(result), flush=True)
    base = next((r for r in results if r["variant"] == "plain"), results[0])
    print(f"\n{'variant':10s} {'tokens/s':>10s} {'vs plain':>9s} {'MFU':>6s} {'wall s':>8s}")
    for r in results:
        mfu = ""
        if args.peak_tflops:
            devices = 1 if r["variant"] != "ray-ds" else args.workers
            mfu = f"{6 * params * r['tokens_per_s'] / (args.peak_tflops * 1e12 * devices):6.1%}"
        print(f"{r['variant']:10s} {r['tokens_per_s']:10.1f} {r['tokens_per_s'] / base['tokens_per_s']:9.3f} {mfu:>6s} {r['wall_s']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
