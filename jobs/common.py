"""The command-line shape every stage shares: --config YAML, --set overrides, --dry-run.

A stage module defines its pydantic config and a `run(config)` function, and its `main(argv)`
is `stage_main(ConfigModel, run, argv, description)`. The config is validated before anything
heavy (Ray, a model) starts, and a bad field exits with status 2 and a message naming it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence, TypeVar

from reasonguard.config import ConfigError, dump_config, load_config, parse_overrides

T = TypeVar("T")


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", "-c", required=True, help="YAML config file (see cluster/configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, dotted keys (e.g. --set engine.model=tiny --set n_samples=2)",
    )
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the config, print it, open every data source and print what would load; then exit")
    parser.add_argument("--skip-data", action="store_true",
                        help="with --dry-run: do not open the data (a config written for another machine's paths)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def load_stage_config(model: type[T], path: str, overrides: Sequence[str] = ()) -> T:
    return load_config(path, model, parse_overrides(list(overrides)))


def stage_main(model: type[T], run: Callable[[T], object], argv: Sequence[str] | None, prog: str, description: str) -> int:
    args = stage_parser(prog, description).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_stage_config(model, args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from reasonguard.datasets.generic import DatasetFormatError
    from reasonguard.datasets.hub import DatasetUnavailableError
    from reasonguard.hygiene import TrainTestOverlap
    from reasonguard.models import ModelUnavailableError
    from reasonguard.run_identity import RunIdentityMismatch

    # User errors found once data or models are read: one message and exit 2, not a traceback.
    user_errors = (TrainTestOverlap, DatasetFormatError, DatasetUnavailableError, ModelUnavailableError, FileNotFoundError,
                   RunIdentityMismatch)
    if args.dry_run:
        from reasonguard.datasets.sources import preview_sources

        print(dump_config(config), end="")
        if args.skip_data:
            return 0
        try:
            previews = preview_sources(config)  # opens every data source: a bad file fails here, not in the run
        except user_errors as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if previews:
            print("\n# data (dry run: nothing else was started)\n" + "\n".join(previews))
        return 0
    try:
        run(config)
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
