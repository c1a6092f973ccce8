"""`python -m jobs.experiment --config cluster/configs/experiment_<study>_local.yaml`: one study, one report.

Studies (the paper's): `sample_efficiency` (subset sizes -> train -> evaluate), `budget` (full /
3 / 1-sentence traces), `dual_mode` (dual-mode vs think-only training), `refinement` (a first
guard, then continual SFT on its mined difficult samples vs on as many random pool items),
`custom_policy` (the same guard trained with and without topic-following data, `topic_data`,
evaluated on held-out topic-following scenarios and the safety suite).
Every variant trains with jobs.train under `output_dir/<variant>/train`; all of them are
evaluated together by jobs.evaluate under `output_dir/evaluate` (metrics.json, report.md, plots),
and `output_dir/report.md` adds the study's variants to that report.
"""

from __future__ import annotations

import sys

from reasonguard.config.experiment import ExperimentConfig
from pipelines.experiment import deep_build, run  # noqa: F401 - the stage body lives in pipelines


def main(argv=None) -> int:
    from jobs.common import stage_main

    return stage_main(ExperimentConfig, run, argv, "python -m jobs.experiment", "Run one of the paper's studies end to end.")


if __name__ == "__main__":
    sys.exit(main())
