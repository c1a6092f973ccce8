"""The demo stage body: distill -> train -> predict on the embedded default, chained.
`jobs.demo` is the entry point and documents what it runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reasonguard.config.demo import DemoConfig

log = logging.getLogger(__name__)


def run(config: DemoConfig) -> Path:
    """The chain, resuming what an earlier demo run left; a stage whose configuration (or input model)
    changed since then starts afresh, so the tables never mix two runs."""
    from pipelines.predict import format_table, read_results
    from pipelines.predict import run as run_predict
    from reasonguard.io import write_json
    from reasonguard.report import guards_side_by_side
    from reasonguard.models import resolve_model

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f">> model: {resolve_model(config.predict.engine.model)}")
    guards = {"base": config.predict.engine.model, **config.compare}
    if "distill" in config.stages:
        from pipelines.distill import run as run_distill

        traces = run_distill(config.distill_config(), restart_on_change=True)
        print(f">> distilled traces: {traces}")
    if "train" in config.stages:
        from pipelines.train import train

        guards["trained"] = str(train(_train_config(config), restart_on_change=True))
        print(f">> trained guard: {guards['trained']}")
    records = []
    if "predict" in config.stages:
        for name, model in guards.items():
            engine = config.predict.engine.model_copy(update={"model": model})
            pred = config.predict.model_copy(update={"engine": engine, "output_dir": str(out / f"predict_{name}")})
            run_predict(pred, restart_on_change=True)
            for rec in read_results(pred.output_dir)[1]:
                records.append({"guard": name, **rec})
        write_json({"guards": guards, "reports": records}, out / "summary.json")
        print("\n" + "\n\n".join(f"== guard: {g} ({guards[g]})\n" + format_table([r for r in records if r["guard"] == g]) for g in guards))
        print("\n== side by side (F1, AUROC and parse failures in %)\n" + guards_side_by_side(records, list(guards)))
    print(f"\n>> outputs in {out}")
    return out


def _train_config(config: DemoConfig):
    """The demo's train section, reading the traces the demo's distill stage just wrote."""
    import json

    train = config.train_config()
    if "distill" in config.stages and train.data.build is not None:
        out = Path(config.distill_config().output_dir)
        kept = json.loads((out / "stats.json").read_text()).get("kept", 0)
        if kept:  # a 135M teacher may keep none: the student then learns from the labelled rows alone
            build = train.data.build.model_copy(update={"traces": [*train.data.build.traces, str(out / "traces.parquet")]})
            train = train.model_copy(update={"data": train.data.model_copy(update={"build": build})})
        print(f">> training on {kept} kept traces + the labelled rows")
    return train
