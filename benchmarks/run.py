"""One command for every benchmark: `python -m benchmarks.run --suite cpu|gpu|smoke [--reps 3]`.

Each measurement runs in a fresh process (cold start, nothing shared), processes are interleaved
and repeated; records stream to `results.jsonl` as they finish (a failed or killed measurement
costs only itself), then `summary.md` (medians, ranges, goals) and plots are written. With
`--update-docs`, the suite's section of docs/benchmarks.md is replaced by the summary.

    .venv/bin/python -m benchmarks.run --suite cpu --reps 3 --out outputs/benchmarks/cpu --update-docs docs/benchmarks.md
    .venv/bin/python -m benchmarks.run --suite gpu --model /models/guard --out outputs/benchmarks/gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import (
    Suite, load_average, machine, plots, read_records, record, schedule, summary_markdown, versions,
)
from benchmarks.suites import SUITES


def measure(spec: dict) -> list[dict]:
    """Inside the measuring process: run one process kind, return its records."""
    from benchmarks.variants import KINDS

    return KINDS[spec["kind"]](spec["variants"], spec["params"], spec["rep"])


def run_suite(suite: Suite, reps: int, out_dir: Path, *, model: str | None = None, only: list[str] | None = None,
              env: dict | None = None) -> list[dict]:
    """Run `suite` into `out_dir`; returns its records (those already in results.jsonl are kept: pass a
    fresh folder for a fresh run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    results = out_dir / "results.jsonl"
    processes = [p for p in suite.processes if not only or any(v in only for v in p.variants)]
    if model:
        processes = [dataclasses.replace(p, params={**p.params, "model": model}) for p in processes]
    header = {"suite": suite.name, "reps": reps, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
              "versions": versions(), "model": model, "processes": [dataclasses.asdict(p) for p in processes]}
    earlier = out_dir / "run.json"
    if earlier.exists() and results.exists():  # more measurements into the same folder: one summary of all
        first = json.loads(earlier.read_text())
        header = {**first, "more": [*first.get("more", []), {k: header[k] for k in ("reps", "started", "processes")}]}
    earlier.write_text(json.dumps(header, indent=2))
    plan = schedule(processes, reps)
    for i, (rep, position, process) in enumerate(plan):
        label = f"[{i + 1}/{len(plan)}] rep {rep} {process.kind} {','.join(process.variants)}"
        print(label, flush=True)
        load_before = load_average()
        records, error = _run_process(process, rep, out_dir / "logs" / f"{i:03d}-{process.kind}-rep{rep}.log", env)
        if error is not None:
            records = [{"variant": v, "ok": False, "error": error} for v in process.variants]
        with results.open("a") as f:
            for rec in records:
                full = record(suite.name, rec.pop("variant"), rep, position, kind=process.kind, ok=rec.pop("ok", True),
                              load_before=load_before, load_after=load_average(), **rec)
                f.write(json.dumps(full) + "\n")
                print(f"    {full['variant']}: " + ", ".join(f"{k}={_short(full[k])}" for k in
                      ("steady_items_per_s", "items_per_s", "startup_s", "requests_per_s", "tokens_per_s", "error") if k in full),
                      flush=True)
    header["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (out_dir / "run.json").write_text(json.dumps(header, indent=2))
    return summarize(suite, out_dir)


def summarize(suite: Suite, out_dir: Path) -> list[dict]:
    """summary.md and the plots of the records in `out_dir` (also after the fact, with new goals or wording)."""
    records = read_records(out_dir / "results.jsonl")
    header = json.loads((out_dir / "run.json").read_text())
    (out_dir / "summary.md").write_text(summary_markdown(suite, records, header))
    for path in plots(records, out_dir):
        print(f"plot: {path}")
    return records


def _run_process(process, rep: int, log_path: Path, env: dict | None) -> tuple[list[dict], str | None]:
    """Run one measuring process; (records, None) or ([], why it failed)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tmp:
        result_path = Path(tmp.name)
    spec = {"kind": process.kind, "variants": list(process.variants), "params": process.params, "rep": rep}
    cmd = [sys.executable, "-m", "benchmarks.run", "--measure", json.dumps(spec), "--result", str(result_path)]
    root = Path(__file__).resolve().parents[1]
    run_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])), **(env or {})}
    try:
        with log_path.open("w") as log:
            proc = subprocess.run(cmd, cwd=root, env=run_env, stdout=log, stderr=subprocess.STDOUT, timeout=process.timeout_s)
        if proc.returncode != 0:
            return [], f"exit {proc.returncode}: {_tail(log_path)}"
        return json.loads(result_path.read_text()), None
    except subprocess.TimeoutExpired:
        return [], f"timed out after {process.timeout_s:.0f} s: {_tail(log_path)}"
    finally:
        result_path.unlink(missing_ok=True)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)[:200]


def update_docs(docs: Path, suite: Suite, summary: str) -> None:
    """Replace the suite's block in docs/benchmarks.md (between its markers; appended if absent)."""
    start, end = f"<!-- benchmarks.run:{suite.name} -->", f"<!-- /benchmarks.run:{suite.name} -->"
    body = "\n".join("#" + line if line.startswith("#") else line for line in summary.splitlines())  # one level down
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    docs.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every process (interleaved)")
    parser.add_argument("--out", default=None, help="output folder (default outputs/benchmarks/<suite>-<time>)")
    parser.add_argument("--model", default=None, help="the guard model for every process (alias, path or hub id)")
    parser.add_argument("--only", nargs="+", default=None, help="run only the processes holding these variants")
    parser.add_argument("--update-docs", default=None, metavar="MD", help="replace this suite's section of MD with the summary")
    parser.add_argument("--summarize-only", action="store_true", help="measure nothing: rewrite summary.md and plots of --out")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        records = measure(json.loads(args.measure))
        Path(args.result).write_text(json.dumps(records))
        return 0
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    suite = SUITES[args.suite]
    if args.only:
        known = {v for p in suite.processes for v in p.variants}
        unknown = sorted(set(args.only) - known)
        if unknown:
            parser.error(f"unknown variants {unknown}; suite {suite.name} has {sorted(known)}")
    out = Path(args.out or f"outputs/benchmarks/{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.summarize_only:
        if not (out / "results.jsonl").exists():
            parser.error(f"--summarize-only: no results.jsonl in {out}")
        summarize(suite, out)
    else:
        run_suite(suite, args.reps, out, model=args.model, only=args.only)
    summary = (out / "summary.md").read_text()
    print("\n" + summary)
    if args.update_docs:
        update_docs(Path(args.update_docs), suite, summary)
        print(f"updated {args.update_docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
