"""`reasonguard`: one command for every stage, plus model and dataset utilities.

Stages run the same code as `python -m jobs.<stage> --config ...` (and `ray job submit`).
Nothing heavy is imported until a subcommand runs, so `reasonguard --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# stage -> (module with main(argv), one-line summary). Order = the pipeline's order.
STAGES: dict[str, tuple[str, str]] = {
    "demo": ("jobs.demo", "end to end on the embedded default: model, demo data, guard in both modes, F1 table"),
    "distill": ("jobs.distill", "teacher reasoning traces with vLLM actors on Ray Data, filtered"),
    "import-traces": ("jobs.import_traces", "recorded teacher outputs (GuardReasoner, Nemotron, a trace table) -> filtered traces"),
    "shorten": ("jobs.shorten", "shorten traces to reasoning budgets (full, N sentences)"),
    "sft-data": ("jobs.sft_data", "build SFT chat examples (reasoning, no-reasoning, dual-mode, subsets)"),
    "train": ("jobs.train", "SFT on Ray Train with DeepSpeed (full fine-tune or LoRA)"),
    "predict": ("jobs.predict", "guard predictions over datasets or the evaluation suite, N samples per item"),
    "evaluate": ("jobs.evaluate", "predict + metrics.json, report.md and plots for one or more guards"),
    "mine": ("jobs.mine", "mine difficult (inconsistent) samples and continue SFT on them"),
    "experiment": ("jobs.experiment", "a whole study: sample efficiency, budgets, dual-mode, refinement"),
    "serve": ("jobs.serve", "the dual-mode guard behind Ray Serve (HTTP)"),
    "submit": ("jobs.submit", "submit a stage as a Ray job to a running cluster and stream its logs"),
}


def _models_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="reasonguard models", description="Provision local models.")
    sub = parser.add_subparsers(dest="action", required=True)
    prep = sub.add_parser("prepare", help="the embedded models: SmolLM2 (GGUF -> HF checkpoint) and the shipped guard "
                          "(SmolLM2 + the repository's LoRA adapter, merged); cached")
    prep.add_argument("--target", help="SmolLM2's output folder (default: <cache>/models/smollm2-135m-instruct)")
    prep.add_argument("--force", action="store_true", help="rebuild even when the checkpoints exist")
    prep.add_argument("--only", choices=["smollm2", "embedded-guard"], help="prepare one of the two")
    tiny = sub.add_parser("tiny", help="build the tiny random Llama used by tests (real SmolLM2 tokenizer)")
    tiny.add_argument("--target")
    tiny.add_argument("--force", action="store_true")
    ship = sub.add_parser("ship", help="copy a LoRA training run's adapter into the package as the embedded guard")
    ship.add_argument("run_dir", help="a jobs.train output_dir trained with lora (holds final-adapter/)")
    ship.add_argument("--target", help="default: the package's reasonguard/data/embedded_guard")
    ship.add_argument("--wall-s", type=float, help="the training run's wall time (default: from train_summary.json)")
    ship.add_argument("--commit", help="the commit the run was trained at (default: HEAD)")
    sub.add_parser("path", help="print where an alias resolves").add_argument(
        "name", help="'smollm2', 'embedded-guard', 'tiny', a path or a hub id")
    args = parser.parse_args(argv)
    from pathlib import Path

    from reasonguard import models

    if args.action == "prepare":
        if args.only != "embedded-guard":
            print(models.prepare_smollm2(Path(args.target) if args.target else None, force=args.force))
        if args.only != "smollm2":
            print(models.prepare_embedded_guard(force=args.force))
    elif args.action == "tiny":
        print(models.build_tiny_model(Path(args.target) if args.target else None, force=args.force))
    elif args.action == "ship":
        print(models.ship_adapter(args.run_dir, Path(args.target) if args.target else None, wall_s=args.wall_s,
                                  commit=args.commit))
    else:
        print(models.resolve_model(args.name))
    return 0


def _datasets_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="reasonguard datasets", description="Registered datasets and suites.")
    sub = parser.add_subparsers(dest="action", required=True)
    lst = sub.add_parser("list", help="registered dataset names")
    lst.add_argument("--kind", choices=["local", "hub", "embedded"])
    sub.add_parser("suite", help="the evaluation suite (GuardReasoner test sets) and the extra suite")
    show = sub.add_parser("show", help="rows, splits, label counts and the first example of a dataset or a file")
    show.add_argument("name", help="a registered dataset name, or a table file (.jsonl .json .csv .tsv .parquet .txt)")
    show.add_argument("--root", help="datasets folder (default: REASONGUARD_DATASETS_DIR)")
    show.add_argument("--columns", help="a file's column mapping as YAML/JSON, e.g. '{prompt: text, prompt_harm_label: label}'")
    show.add_argument("--label-map", help="raw label -> harmful/unharmful/null as YAML, e.g. '{toxic: harmful, ok: unharmful}'")
    show.add_argument("--labels", help="constant labels as YAML, e.g. '{prompt_harm: harmful}'")
    show.add_argument("--split", help="registered: keep this split; a file: its rows' split (or the filter with a split column)")
    show.add_argument("--encoding", default="utf-8")
    args = parser.parse_args(argv)
    from reasonguard import datasets

    if args.action == "list":
        for name in datasets.list_datasets(args.kind):
            spec = datasets.get_spec(name)
            print(f"{name:45s} {spec.kind:9s} {spec.license}")
    elif args.action == "suite":
        for title, suite in (("evaluation suite", datasets.EVAL_SUITE), ("extra suite", datasets.EXTRA_SUITE)):
            print(f"# {title}")
            for entry in suite:
                print(f"{entry.name:28s} {entry.task:9s} {entry.loader}")
    else:
        import yaml

        from reasonguard.config import ConfigError, validate_config
        from reasonguard.config.common import DataSource
        from reasonguard.datasets.generic import DatasetFormatError
        from reasonguard.datasets.sources import format_preview, load_source

        spec: dict = {"split": args.split}
        if args.name in datasets.list_datasets():
            spec.update(dataset=args.name, root=args.root)
        else:
            spec.update(path=args.name, encoding=args.encoding)
            for key, text in (("columns", args.columns), ("label_map", args.label_map), ("labels", args.labels)):
                if text:
                    spec[key] = yaml.safe_load(text)
        try:
            source = validate_config(DataSource, spec, "datasets show")
            print(format_preview(source.display_name, load_source(source)))
        except (ConfigError, DatasetFormatError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:14s} {summary}" for name, (_, summary) in STAGES.items()]
    lines += ["  models       prepare the embedded SmolLM2 and the shipped guard, build the tiny test model, ship an adapter",
              "  datasets     list registered datasets and the evaluation suite"]
    parser = argparse.ArgumentParser(
        prog="reasonguard",
        description="Reasoning-based LLM safety guardrails, distilled, trained and served on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="stages (each takes --config FILE [--set key=value] [--dry-run]):\n" + "\n".join(lines),
    )
    parser.add_argument("command", choices=[*STAGES, "models", "datasets"], metavar="COMMAND", help="a stage or utility")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command (see reasonguard COMMAND --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "models":
        return _models_command(args.args)
    if args.command == "datasets":
        return _datasets_command(args.args)
    module = importlib.import_module(STAGES[args.command][0])
    return int(module.main(args.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
