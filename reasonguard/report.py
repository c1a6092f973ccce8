"""Evaluation reports: metrics records -> paper-shaped markdown tables and PNG plots (pure; matplotlib only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from reasonguard.metrics import suite_mean

TASK_TITLES = {"prompt": "Prompt harm (harmful-class F1)", "response": "Response harm (harmful-class F1)",
               "refusal": "Refusal detection (refusal-class F1)"}


def _fmt(value: Any, scale: float = 100.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.{digits}f}"


def suite_table(records: Sequence[dict], task: str, metric: str = "f1_mean") -> str:
    """Rows = guard/mode, columns = datasets of `task`, last column the unweighted average (as in the paper)."""
    rows = [r for r in records if r["task"] == task]
    if not rows:
        return ""
    datasets = sorted({r["dataset"] for r in rows})
    keys = sorted({(r["guard"], r["mode"]) for r in rows}, key=lambda k: (k[0], k[1]))
    lines = ["| guard | mode | " + " | ".join(datasets) + " | avg |", "|---|---|" + "---:|" * (len(datasets) + 1)]
    for guard, mode in keys:
        values = {r["dataset"]: r[metric] for r in rows if r["guard"] == guard and r["mode"] == mode}
        present = [v for v in values.values() if v is not None and not math.isnan(v)]
        avg = sum(present) / len(present) if present else float("nan")
        lines.append(f"| {guard} | {mode} | " + " | ".join(_fmt(values.get(d)) for d in datasets) + f" | {_fmt(avg)} |")
    return "\n".join(lines)


def guards_side_by_side(records: Sequence[dict], guards: Sequence[str]) -> str:
    """One row per dataset, task and mode; per guard (in the order given) its F1, AUROC and parse failures (%)."""
    keys = sorted({(r["dataset"], r["task"], r["mode"]) for r in records})
    head = "| dataset | task | mode | n | " + " | ".join(f"{g} F1 | {g} AUROC | {g} fail%" for g in guards) + " |"
    lines = [head, "|---|---|---|---:|" + "---:|" * (3 * len(guards))]
    for dataset, task, mode in keys:
        rows = {r["guard"]: r for r in records if (r["dataset"], r["task"], r["mode"]) == (dataset, task, mode)}
        n = next(iter(rows.values()))["n_items"]
        cells = []
        for g in guards:
            r = rows.get(g, {})
            cells += [_fmt(r.get("f1_mean")), _fmt(r.get("auroc")), _fmt(r.get("parse_failure_rate"))]
        lines.append(f"| {dataset} | {task} | {mode} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(records: Sequence[dict]) -> str:
    """Per guard and mode: mean output tokens, mean and p90 latency per item, parse-failure rate (means over datasets)."""
    keys = sorted({(r["guard"], r["mode"]) for r in records})
    lines = ["| guard | mode | mean output tokens | mean latency s/item | p90 latency s/item | parse failures % |",
             "|---|---|---:|---:|---:|---:|"]
    for guard, mode in keys:
        rows = [r for r in records if r["guard"] == guard and r["mode"] == mode]
        mean = lambda k: suite_mean([r[k] for r in rows])  # noqa: E731
        lines.append(f"| {guard} | {mode} | {_fmt(mean('mean_output_tokens'), 1)} | {_fmt(mean('latency_mean_s'), 1, 3)} | "
                     f"{_fmt(mean('latency_p90_s'), 1, 3)} | {_fmt(mean('parse_failure_rate'))} |")
    return "\n".join(lines)


def summary(records: Sequence[dict]) -> list[dict]:
    """Per guard, mode and task: average F1 (mean over samples, and majority vote), tokens, latency."""
    out = []
    for guard, mode, task in sorted({(r["guard"], r["mode"], r["task"]) for r in records}):
        rows = [r for r in records if (r["guard"], r["mode"], r["task"]) == (guard, mode, task)]
        out.append({
            "guard": guard, "mode": mode, "task": task, "n_datasets": len(rows),
            "f1_mean": suite_mean([r["f1_mean"] for r in rows]), "majority_f1": suite_mean([r["majority_f1"] for r in rows]),
            "mean_output_tokens": suite_mean([r["mean_output_tokens"] for r in rows]),
            "latency_mean_s": suite_mean([r["latency_mean_s"] for r in rows]), "budget": rows[0].get("budget"),
        })
    return out


def score_table(records: Sequence[dict]) -> str:
    """P(harmful) quality per guard, mode, task and dataset: AUROC, AUPRC, Brier, ECE (10 bins)."""
    rows = [r for r in records if r.get("n_scored")]
    if not rows:
        return ""
    lines = ["| guard | mode | task | dataset | scored | AUROC | AUPRC | Brier | ECE |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.get("guard", ""), r["mode"], r["task"], r["dataset"])):
        lines.append(
            f"| {r.get('guard', '')} | {r['mode']} | {r['task']} | {r['dataset']} | {r['n_scored']} | {_fmt(r.get('auroc'))} | "
            f"{_fmt(r.get('auprc'))} | {_fmt(r.get('brier'), 1.0, 3)} | {_fmt(r.get('ece'), 1.0, 3)} |"
        )
    return "\n".join(lines)


def calibration_table(records: Sequence[dict]) -> str:
    """Held-out items: ECE before and after temperature scaling, F1 of the verdict vs at the threshold."""
    if not records:
        return ""
    lines = ["| guard | mode | task | dataset | scored | T | threshold | ECE before | ECE after | F1 verdict | F1 at threshold |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        t = "-" if r.get("temperature") is None else f"{r['temperature']:.2f}"
        th = "-" if r.get("threshold") is None else f"{r['threshold']:.2f}"
        lines.append(
            f"| {r.get('guard', '')} | {r['mode']} | {r['task']} | {r['dataset']} | {r['n_scored']} | {t} | {th} | "
            f"{_fmt(r['ece_before'], 1.0, 3)} | {_fmt(r['ece_after'], 1.0, 3)} | {_fmt(r['f1_verdict'])} | {_fmt(r['f1_at_threshold'])} |"
        )
    return "\n".join(lines)


def render_report(title: str, records: Sequence[dict], plots: Sequence[str] = (), notes: str = "",
                  calibration: Sequence[dict] = (), categories: Sequence[dict] = ()) -> str:
    parts = [f"# {title}", ""]
    if notes:
        parts += [notes, ""]
    for task, heading in TASK_TITLES.items():
        for metric, label in (("f1_mean", "mean over samples"), ("majority_f1", "majority vote")):
            table = suite_table(records, task, metric)
            if table:
                parts += [f"## {heading}, {label}", "", table, ""]
    parts += ["## Cost per item", "", cost_table(records), ""]
    scores = score_table(records)
    if scores:
        parts += ["## P(harmful): ranking and calibration", "",
                  "Pooled over samples; AUROC/AUPRC in percent, Brier and ECE (10 equal-width bins) as fractions.", "", scores, ""]
    cal = calibration_table(calibration)
    if cal:
        parts += ["## Calibration (held-out items)", "",
                  "Temperature scaling fitted on a validation split of the items (raw scores); "
                  "reported here on the other items.", "", cal, ""]
    if categories:
        from reasonguard.categories import category_table

        parts += ["## Violated categories", "",
                  "Per native category of each dataset: an item counts as named when the guard named any of the Aegis 2.0 "
                  "codes the category maps to (docs/categories.md); every item counts, benign ones as negatives. "
                  "P/R/F1 in percent; `macro` = mean F1 over the categories with gold items.", "",
                  category_table(categories), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    parts += ["F1 in percent. Parse failures count as wrong (policy `count_as_wrong`). "
              "Averages are unweighted means over datasets, as in the paper.", ""]
    return "\n".join(parts)


def write_plots(records: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """F1 per dataset per mode; F1 vs mean reasoning tokens; latency vs budget (or vs guard)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    # 1. F1 per dataset, one bar per guard/mode.
    datasets = sorted({(r["task"], r["dataset"]) for r in records})
    series = sorted({(r["guard"], r["mode"]) for r in records})
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(datasets) * max(1, len(series)) ** 0.5 + 3), 4))
    width = 0.8 / max(1, len(series))
    for i, (guard, mode) in enumerate(series):
        vals = []
        for task, ds in datasets:
            match = [r["f1_mean"] for r in records if (r["guard"], r["mode"], r["task"], r["dataset"]) == (guard, mode, task, ds)]
            vals.append(0.0 if not match or math.isnan(match[0]) else 100 * match[0])
        ax.bar([x + i * width for x in range(len(datasets))], vals, width, label=f"{guard} / {mode}")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(datasets))])
    ax.set_xticklabels([ds for _, ds in datasets], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("F1 (%)")
    ax.set_title("F1 per dataset and mode")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "f1_per_dataset.png"))
    # 2. F1 vs mean output tokens (each guard/mode a point, per task).
    summ = summary(records)
    fig, ax = plt.subplots(figsize=(6, 4))
    for task in sorted({s["task"] for s in summ}):
        pts = [s for s in summ if s["task"] == task]
        ax.scatter([s["mean_output_tokens"] for s in pts], [100 * s["f1_mean"] for s in pts], label=task)
        for s in pts:
            ax.annotate(f"{s['guard']}/{s['mode']}", (s["mean_output_tokens"], 100 * s["f1_mean"]), fontsize=7)
    ax.set_xlabel("mean output tokens per item")
    ax.set_ylabel("average F1 (%)")
    ax.set_title("F1 vs reasoning tokens")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "f1_vs_tokens.png"))
    # 3. Latency per guard/mode (budget on the label when known).
    keys = sorted({(s["guard"], s["mode"], s["budget"]) for s in summ}, key=lambda k: (str(k[2]), k[0], k[1]))
    lat = [suite_mean([s["latency_mean_s"] for s in summ if (s["guard"], s["mode"]) == k[:2]]) for k in keys]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(range(len(keys)), [0.0 if math.isnan(v) else v for v in lat])
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{g}/{m}" + (f"\nbudget {b}" if b else "") for g, m, b in keys], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("mean latency per item (s)")
    ax.set_title("Latency vs budget and mode")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "latency_vs_budget.png"))
    return paths


def write_reliability_diagram(curves: dict[str, tuple[Sequence[float], Sequence[int]]], path: str | Path) -> Path | None:
    """Reliability diagram: per curve (label -> scores, 0/1 labels), observed positive rate vs mean
    score in 10 equal-width bins, beside the diagonal. None when no curve has data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reasonguard.score_metrics import expected_calibration_error, reliability_bins

    curves = {k: v for k, v in curves.items() if len(v[0])}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for label, (scores, labels) in sorted(curves.items()):
        bins = [b for b in reliability_bins(scores, labels) if b.count]
        ece = expected_calibration_error(scores, labels)
        ax.plot([b.mean_score for b in bins], [b.positive_rate for b in bins], marker="o", label=f"{label} (ECE {ece:.3f}, n={len(scores)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean P(harmful) in bin")
    ax.set_ylabel("observed harmful rate")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, Path(path))


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
