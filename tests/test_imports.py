"""The core package stays light: importing it must not pull in Ray, vLLM, DeepSpeed or torch."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["ray", "vllm", "deepspeed", "torch", "transformers"]


def test_core_import_is_light():
    code = (
        "import sys, reasonguard, reasonguard.prompts, reasonguard.verdict, reasonguard.targets, "
        "reasonguard.policy, reasonguard.schema, reasonguard.config, reasonguard.models, reasonguard.engines\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported by the core: {out}"


def _imported_modules(path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_layers_jobs_are_leaves_and_nothing_imports_them():
    """jobs/<stage>.py is an entry point (config + CLI) over a stage body in pipelines/; chaining
    stages (demo, experiment, evaluate, mine) calls those bodies. Only jobs.common is shared."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for package in ("jobs", "pipelines", "serve", "reasonguard"):
        for path in (root / package).rglob("*.py"):
            jobs_imports = {m for m in _imported_modules(path) if m == "jobs" or m.startswith("jobs.")}
            allowed = {"jobs.common"} if package == "jobs" else set()
            assert jobs_imports <= allowed, f"{path.relative_to(root)} imports {sorted(jobs_imports - allowed)}"
    for path in (root / "reasonguard").rglob("*.py"):
        bad = {m for m in _imported_modules(path) if m.split(".")[0] in ("pipelines", "serve")}
        assert not bad, f"the core must not import pipelines or serve: {path.relative_to(root)} imports {sorted(bad)}"
