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
