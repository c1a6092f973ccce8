"""A small chain of real sft_data stages (seconds, no Ray, no engine) for the chain runner's tests, run
as local processes (tests/jobs/test_chain_job.py) and as cluster jobs (tests/deploy/test_local_cluster.py).

a.yaml builds 8 labelled demo rows; b.yaml reads a traces file that never exists (declared external, so
the chain checks but stage 2 fails when it runs); stage 3 is a.yaml again with its own output.
"""

from __future__ import annotations

import yaml

LABELLED = {"traces": [], "labelled": [{"dataset": "demo", "split": "train", "limit": 8}], "mode": "no_think"}
STAGES = [{"stage": "sft_data", "config": "a.yaml"}, {"stage": "sft_data", "config": "b.yaml"},
          {"stage": "sft_data", "config": "a.yaml", "set": {"output": "outputs/c/sft.parquet"}}]
FAILING_AT_B = {"datasets": ["demo"], "paths": ["missing/traces.parquet"]}  # b.yaml's missing input, declared


def write_chain(root, stages: list[dict], external: dict) -> None:
    (root / "a.yaml").write_text(yaml.safe_dump({**LABELLED, "output": "outputs/a/sft.parquet"}))
    (root / "b.yaml").write_text(yaml.safe_dump({"traces": ["missing/traces.parquet"], "mode": "no_think",
                                                 "output": "outputs/b/sft.parquet"}))
    (root / "chain.yaml").write_text(yaml.safe_dump({"external": external, "stages": stages}))


def mend_stage_b(root, stages: list[dict] = STAGES) -> None:
    """b.yaml fixed (labelled rows, no missing input) and the chain without the external path nothing reads now."""
    write_chain(root, stages, {"datasets": ["demo"]})
    (root / "b.yaml").write_text(yaml.safe_dump({**LABELLED, "output": "outputs/b/sft.parquet"}))
