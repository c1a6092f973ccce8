"""Print the docs/results.md tables of the shipped guard from an evaluate run's metrics.json, beside the
published numbers of larger guards on the same sets (sources in the docs).

    python scripts/results_embedded_guard.py outputs/evaluate_embedded_guard/metrics.json
"""

from __future__ import annotations

import json
import sys

PROMPT_SETS = [("toxicchat", "ToxicChat"), ("openai_moderation", "OpenAI Mod"), ("wildguardtest_prompts_derived", "WildGuardTest")]
RESPONSE_SETS = [("beavertails", "BeaverTails"), ("safe_rlhf", "SafeRLHF")]
# Harmful-class F1 (%). GuardReasoner paper (arXiv 2501.18492v2, Tables 2 and 5) for Llama Guard 3 8B and
# GuardReasoner-8B; Qwen3Guard technical report (arXiv 2510.14276, Tables 2 and 3, strict mode) for Qwen3Guard-Gen-8B.
PUBLISHED = {
    "Llama Guard 3 8B": {"toxicchat": 53.12, "openai_moderation": 79.69, "wildguardtest_prompts_derived": 76.18,
                         "beavertails": 67.84, "safe_rlhf": 44.36},
    "Qwen3Guard-Gen-8B (strict)": {"toxicchat": 68.9, "openai_moderation": 68.8, "wildguardtest_prompts_derived": 88.9,
                                   "beavertails": 86.6, "safe_rlhf": 70.5},
    "GuardReasoner-8B": {"toxicchat": 78.79, "openai_moderation": 72.00, "wildguardtest_prompts_derived": 89.17,
                         "beavertails": 87.60, "safe_rlhf": 70.04},
}


def pct(value) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}"


def table(records: list[dict], sets: list[tuple[str, str]], task: str, metric: str, published: bool) -> str:
    head = "| guard | mode | " + " | ".join(t for _, t in sets) + " | avg |"
    lines = [head, "|---|---|" + "---:|" * (len(sets) + 1)]
    for mode in ("no_think", "think"):
        rows = {r["dataset"]: r for r in records if r["mode"] == mode and r["task"] == task}
        values = [rows.get(d, {}).get(metric) for d, _ in sets]
        present = [v for v in values if v is not None and v == v]
        avg = sum(present) / len(present) if present else None
        lines.append(f"| shipped guard (135M) | `/{mode}` | " + " | ".join(pct(v) for v in values) + f" | {pct(avg)} |")
    if published:
        for name, numbers in PUBLISHED.items():
            values = [numbers.get(d) for d, _ in sets]
            avg = sum(values) / len(values)
            lines.append(f"| {name} (published) | | " + " | ".join(f"{v:.1f}" for v in values) + f" | {avg:.1f} |")
    return "\n".join(lines)


def cost(records: list[dict]) -> str:
    lines = ["| mode | items | parse failures % | output tokens / item | seconds / item (mean, p90) |", "|---|---:|---:|---:|---:|"]
    for mode in ("no_think", "think"):
        rows = [r for r in records if r["mode"] == mode]
        n = sum(r["n_items"] for r in rows)
        w = lambda k: sum(r[k] * r["n_items"] for r in rows) / n  # noqa: E731 - item-weighted mean over sets
        lines.append(f"| `/{mode}` | {n} | {100 * w('parse_failure_rate'):.1f} | {w('mean_output_tokens'):.1f} | "
                     f"{w('latency_mean_s'):.2f}, {max(r['latency_p90_s'] for r in rows):.2f} |")
    return "\n".join(lines)


def main(path: str) -> None:
    records = json.loads(open(path).read())["reports"]
    print("Prompt harm, harmful-class F1 (%):\n\n" + table(records, PROMPT_SETS, "prompt", "f1_mean", True))
    print("\nResponse harm, harmful-class F1 (%):\n\n" + table(records, RESPONSE_SETS, "response", "f1_mean", True))
    print("\nAUROC of P(harmful) (%), prompt sets:\n\n" + table(records, PROMPT_SETS, "prompt", "auroc", False))
    print("\nAUROC of P(harmful) (%), response sets:\n\n" + table(records, RESPONSE_SETS, "response", "auroc", False))
    print("\nCost (all five sets):\n\n" + cost(records))


if __name__ == "__main__":
    main(sys.argv[1])
