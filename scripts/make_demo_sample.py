"""Regenerate the embedded demo sample (reasonguard/data/demo/demo.jsonl + ATTRIBUTION.md).

    .venv/bin/python scripts/make_demo_sample.py [--root /path/to/datasets] [--out reasonguard/data/demo]

Deterministic: a fixed seed over the vendored datasets (default root: $REASONGUARD_DATASETS_DIR,
else ../shared/datasets). Re-running on the same data rewrites identical files.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from reasonguard.datasets.demo import DEMO_SEED, build_demo_sample, demo_rows_jsonl, render_attribution
from reasonguard.datasets.registry import load_dataset

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "reasonguard" / "data" / "demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="datasets folder (holds xstest/, harmbench/, ...)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    args = parser.parse_args(argv)
    rows = build_demo_sample(load_dataset, args.root, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demo.jsonl").write_text(demo_rows_jsonl(rows), encoding="utf-8")
    (args.out / "ATTRIBUTION.md").write_text(render_attribution(rows), encoding="utf-8")
    counts = collections.Counter(
        (r.split, "response" if r.response_harm_label else "prompt", r.response_harm_label or r.prompt_harm_label)
        for r in rows
    )
    print(f"wrote {len(rows)} rows to {args.out}: {dict(sorted(counts.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
