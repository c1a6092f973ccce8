"""The embedded demo sample: 64 short, permissively licensed (MIT / CC-BY-4.0) labelled examples.

48 prompt-level rows (24 harmful / 24 unharmful) and 16 prompt+response rows (8 / 8 response
harm), shipped as package data so the CPU demo needs no external folder. Rows keep the id and
source of the dataset they came from; `split` is a fixed stratified 2:1 train/test assignment.
`build_demo_sample` recreates it from the vendored datasets (scripts/make_demo_sample.py writes
it, with ATTRIBUTION.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Callable
from importlib import resources

from reasonguard.schema import GuardExample

DEMO_SEED = 20260601
MAX_CHARS = 600
DEMO_PACKAGE_DIR = ("data", "demo")

# source -> (upstream, commit, license), from each folder's SOURCE.md.
DEMO_SOURCES: dict[str, tuple[str, str, str]] = {
    "simple_safety_tests": ("GitHub bertiev/SimpleSafetyTests", "d7aee9a9422a5a5488f478fd79c2479c891c0f3b", "CC-BY-4.0"),
    "harmbench": (
        "HarmBench text behaviors (centerforaisafety/HarmBench, via allenai/wildteaming)",
        "HarmBench 8e1604d1171fe8a48d8febecd22f600e462bdcdd; wildteaming 0a94b909079cb6d59df2a6457251d0ff5bb6a026",
        "MIT",
    ),
    "xstest": (
        "GitHub paul-rottger/exaggerated-safety (xstest_prompts.csv)",
        "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d",
        "CC-BY-4.0",
    ),
    "openai_moderation": ("GitHub openai/moderation-api-release", "f4ab51b5edd3bfbcb349a56324274235b674e0e4", "MIT"),
    "jailbreakbench_benign": (
        "JBB-Behaviors benign goals (bigsnarfdude/wizard101 copy, joined to JailbreakBench/artifacts)",
        "wizard101 46c3ee4494aa2651232857ba365245443b3e6fa1; artifacts 909e68c01d94222b8ad2e397a017e2e12e2adb73",
        "MIT",
    ),
    "jailbreakbench_responses": (
        "GitHub JailbreakBench/artifacts (attack prompts and target-model responses; judge labels)",
        "909e68c01d94222b8ad2e397a017e2e12e2adb73",
        "MIT",
    ),
}


def _short(example: GuardExample) -> bool:
    return len(example.prompt) < MAX_CHARS and len(example.response or "") < MAX_CHARS


def _buckets() -> list[tuple[str, str, int, Callable[[GuardExample], bool]]]:
    """(registry name, group, count, filter); groups are balanced and split 2:1 train/test."""
    return [
        ("simple_safety_tests", "prompt_harmful", 6, lambda e: e.categories != ("Child safety",)),
        ("harmbench", "prompt_harmful", 6, lambda e: e.extra["functional_category"] == "standard"),
        ("xstest", "prompt_harmful", 6, lambda e: e.prompt_harm_label == "harmful"),
        ("openai_moderation", "prompt_harmful", 6,
         lambda e: e.prompt_harm_label == "harmful" and not {"S", "S3"} & set(e.categories)),
        ("xstest", "prompt_unharmful", 8, lambda e: e.prompt_harm_label == "unharmful"),
        ("openai_moderation", "prompt_unharmful", 8,
         lambda e: e.prompt_harm_label == "unharmful" and len(e.extra["flags"]) == 8),  # all 8 flags known 0
        ("jailbreakbench_benign", "prompt_unharmful", 8, lambda e: True),
        ("jailbreakbench_responses", "response_harmful", 8, lambda e: _judges_agree(e, "harmful")),
        ("jailbreakbench_responses", "response_unharmful", 8, lambda e: _judges_agree(e, "unharmful")),
    ]


def _judges_agree(example: GuardExample, label: str) -> bool:
    """JailbreakBench labels are automatic: keep rows where its judge and Llama Guard 1 agree."""
    guard1 = example.extra.get("jailbroken_llama_guard1")
    return (
        example.response_harm_label == label
        and guard1 is not None
        and guard1 == (label == "harmful")
        and example.categories != ("Sexual/Adult content",)
    )


def build_demo_sample(load_dataset: Callable[..., list[GuardExample]], root: str | os.PathLike | None = None,
                      seed: int = DEMO_SEED) -> list[GuardExample]:
    """Draw the demo rows from the vendored datasets (deterministic for a given seed and data).
    `load_dataset` is the registry's (name, root=) loader, passed in: the registry imports this
    module for `load_demo`, so this module does not import the registry."""
    rng = random.Random(seed)
    loaded: dict[str, list[GuardExample]] = {}
    groups: dict[str, list[GuardExample]] = {}
    for name, group, count, keep in _buckets():
        if name not in loaded:
            loaded[name] = sorted(load_dataset(name, root=root), key=lambda e: e.id)
        pool = [e for e in loaded[name] if _short(e) and keep(e)]
        groups.setdefault(group, []).extend(rng.sample(pool, count))
    rows = []
    for members in groups.values():
        for position, example in enumerate(members):
            split = "test" if position % 3 == 2 else "train"
            rows.append(dataclasses.replace(example, split=split))
    return rows


def render_attribution(rows: list[GuardExample]) -> str:
    """ATTRIBUTION.md text: each source, its commit, license and the ids of the rows taken from it."""
    lines = [
        "# Demo sample attribution",
        "",
        f"`demo.jsonl` holds {len(rows)} rows drawn by `scripts/make_demo_sample.py` (seed {DEMO_SEED}) from the",
        "datasets below, unchanged except for `split`. Only MIT and CC-BY-4.0 sources are used; CC-BY-4.0 requires",
        "this attribution. Labels are the sources' own; the JailbreakBench response labels are automatic (its judge),",
        "and only rows where that judge and Llama Guard 1 agree were drawn.",
        "",
    ]
    by_source: dict[str, list[str]] = {}
    for row in rows:
        by_source.setdefault(row.source, []).append(row.id)
    for source, ids in by_source.items():
        upstream, commit, license_name = DEMO_SOURCES[source]
        lines += [f"## {source} ({len(ids)} rows)", "", f"- Source: {upstream}", f"- Commit: {commit}",
                  f"- License: {license_name}", f"- Rows: {', '.join(ids)}", ""]
    lines.append(
        "JailbreakBench responses were generated by the attacked models (vicuna-13b, llama-2-7b-chat, gpt-3.5-turbo, "
        "gpt-4) and published in the MIT-licensed artifacts repository."
    )
    return "\n".join(lines) + "\n"


def demo_rows_jsonl(rows: list[GuardExample]) -> str:
    return "".join(json.dumps(r.to_row(), ensure_ascii=False, sort_keys=True) + "\n" for r in rows)


def load_demo(split: str | None = None) -> list[GuardExample]:
    """The embedded demo sample from package data (no external files); `split` ("train"/"test") filters."""
    text = resources.files("reasonguard").joinpath(*DEMO_PACKAGE_DIR, "demo.jsonl").read_text(encoding="utf-8")
    rows = [GuardExample.from_row(json.loads(line)) for line in text.splitlines() if line.strip()]
    return rows if split is None else [r for r in rows if r.split == split]
