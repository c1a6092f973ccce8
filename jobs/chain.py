"""Run a declared chain (cluster/chains/*.yaml) on this machine, stage after stage.

Each stage is its own `python -m jobs.<stage>` process with its own local Ray, as it would be under
`ray job submit`; the chain is checked statically first (every input produced earlier or declared) and
stops at the first stage that fails, naming it and showing its log's end. Every stage resumes the
work it finished, so running the chain again after a failure or a kill redoes only what is missing
(`--from` skips the stages before one). Logs and `chain_run.json` (one record per stage, written as
each stage ends) go to `--logs`.

    python -m jobs.chain cluster/chains/local.yaml
    python -m jobs.chain cluster/chains/local.yaml --from train --until evaluate
    python -m jobs.chain cluster/chains/local.yaml --replace smollm2=tiny --replace outputs/=outputs/chain_tiny/

`--replace OLD=NEW` rewrites every config value that starts with OLD (a model alias, an output root):
the whole chain on the tiny random model, or into another folder, without editing a config.

`--address http://HEAD:8265` submits each stage to a running Ray cluster instead, through the project's
submitter (`python -m jobs.submit`, the same JobSubmissionClient call as `ray job submit`): one job per
stage, submission id `<chain run>-NN-<stage>`, waited for, its log streamed into the stage log; a failed
or stopped job stops the chain (exit 1 or 3), and Ctrl-C stops the running job on the cluster. The jobs
run in `--working-dir`: by default this checkout in place (`local://<root>`), right when the head runs on
this machine or sees this folder at the same path, so relative outputs land here, where every later
stage (and every node) finds them. On a remote cluster pass `--working-dir .` (uploaded) and put outputs
on shared storage (`--replace outputs/=/shared/outputs/`); a config must then lie inside the uploaded
checkout (`--logs` outside outputs/, which is not uploaded), or the submitter refuses it before sending.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from reasonguard.config import ConfigError
from reasonguard.config.chain import (
    Chain, ChainStage, ExternalInputs, check_chain, load_chain, load_stage_configs, parse_replacements, replace_prefixes,
    select_stages, stage_argv)

LOG_TAIL_LINES = 40


def rewrite_chain(chain: Chain, replacements: list[tuple[str, str]], root: str | Path, config_dir: str | Path) -> Chain:
    """The chain with `replacements` applied to every stage config (written under `config_dir`, relative
    to `root`, named by position) and to its `set` values and external inputs; unchanged when there are none."""
    if not replacements:
        return chain
    config_dir = Path(config_dir)  # relative to `root`, as the chain's config paths are
    (Path(root) / config_dir).mkdir(parents=True, exist_ok=True)
    stages = []
    for index, entry in enumerate(chain.stages, 1):
        document = yaml.safe_load((Path(root) / entry.config).read_text())
        path = config_dir / f"{index:02d}-{entry.stage}-{Path(entry.config).name}"
        (Path(root) / path).write_text(yaml.safe_dump(replace_prefixes(document, replacements), sort_keys=False))
        stages.append(ChainStage(stage=entry.stage, config=str(path), set=replace_prefixes(dict(entry.set), replacements)))
    external = ExternalInputs.model_validate(replace_prefixes(chain.external.model_dump(), replacements))
    return chain.model_copy(update={"stages": stages, "external": external})


def submit_argv(entry: ChainStage, address: str, submission_id: str, working_dir: str, runtime_env: str | None) -> list[str]:
    """The stage through the project's submitter (`python -m jobs.submit`, i.e. `reasonguard submit`): the
    config path checked before anything is sent, the job's log streamed, exit 0 succeeded / 1 failed /
    3 stopped, and Ctrl-C stops the job on the cluster."""
    sets = stage_argv(entry)[4:]  # after -m jobs.<stage> --config <path>: the --set pairs
    return [sys.executable, "-m", "jobs.submit", entry.stage, "--address", address, "--config", entry.config, *sets,
            "--working-dir", working_dir, "--runtime-env", runtime_env or "", "--submission-id", submission_id]


def run_chain(chain_path: str, logs: Path, replacements: list[str] = (), start: str | None = None,
              until: str | None = None, root: str = ".", dry_run: bool = False, address: str | None = None,
              working_dir: str | None = None, runtime_env: str | None = "cluster/runtime_env.yaml") -> int:
    """0 when every selected stage succeeded; 2 for a chain that does not check; else the failing
    stage's exit status. Config paths and `logs` are relative to `root` (the repository root).
    With `address`, each stage is a `ray job submit` to that cluster (see the module's docstring)."""
    try:
        chain = rewrite_chain(load_chain(chain_path), parse_replacements(list(replacements)), root, logs / "configs")
        problems = check_chain(chain, load_stage_configs(chain, root))
        selected = select_stages(chain, start, until)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"error: {chain_path} does not chain:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    total = len(chain.stages)
    working_dir = working_dir or f"local://{Path(root).resolve()}"
    run_id = time.strftime("chain-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]

    def command(index: int) -> tuple[ChainStage, list[str], str | None]:
        entry = chain.stages[index]
        if not address:
            return entry, [sys.executable, *stage_argv(entry)], None
        submission_id = f"{run_id}-{index + 1:02d}-{entry.stage.replace('_', '-')}"
        return entry, submit_argv(entry, address, submission_id, working_dir, runtime_env), submission_id

    if dry_run:
        for index in selected:
            _, argv, _ = command(index)
            print(f"[{index + 1}/{total}] python " + " ".join(argv[1:]))
        return 0
    logs = Path(root) / logs  # stage processes run in `root`: their logs and configs are found from there
    logs.mkdir(parents=True, exist_ok=True)
    record_path = logs / "chain_run.json"
    records: list[dict] = []
    for index in selected:
        entry, argv, submission_id = command(index)
        log_path = logs / f"{index + 1:02d}-{entry.stage}.log"
        where = f"submitted to {address} as {submission_id}" if address else "here"
        print(f"[{index + 1}/{total}] {entry.stage} ({entry.config}) {where} ... log {log_path}", flush=True)
        started = time.monotonic()
        with open(log_path, "wb") as log:
            code = subprocess.call(argv, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        seconds = round(time.monotonic() - started, 1)
        records.append({"position": index + 1, "stage": entry.stage, "config": entry.config, "set": entry.set,
                        "command": argv[1:], "exit_code": code, "seconds": seconds, "log": str(log_path),
                        **({"address": address, "submission_id": submission_id} if address else {})})
        record_path.write_text(json.dumps({"chain": chain_path, "stages": records}, indent=2))
        if code != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            print("\n".join(tail), file=sys.stderr)
            print(f"error: stage {index + 1}/{total} ({entry.stage}, {entry.config}) failed with exit {code} after "
                  f"{seconds:.0f} s; fix it and re-run with --from {index + 1} (finished work is kept)", file=sys.stderr)
            return code
        print(f"[{index + 1}/{total}] {entry.stage} done in {seconds:.0f} s", flush=True)
    print(f"chain done: {len(records)} stages in {sum(r['seconds'] for r in records):.0f} s ({record_path})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("chain", help="a chain file, e.g. cluster/chains/local.yaml")
    parser.add_argument("--logs", default="outputs/chain_logs", help="stage logs and chain_run.json (default outputs/chain_logs)")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=NEW",
                        help="rewrite config values starting with OLD (repeatable), e.g. smollm2=tiny")
    parser.add_argument("--from", dest="start", help="first stage to run: its position (1-based) or name")
    parser.add_argument("--until", help="last stage to run: its position or name (its last occurrence)")
    parser.add_argument("--root", default=".", help="repository root the config paths are relative to")
    parser.add_argument("--dry-run", action="store_true", help="check the chain and print the stage commands; run nothing")
    parser.add_argument("--address", help="submit each stage to this Ray cluster (http://HEAD:8265) with `ray job submit`")
    parser.add_argument("--working-dir", help="with --address: the jobs' working dir (default local://<root>: this checkout in place)")
    parser.add_argument("--runtime-env", default="cluster/runtime_env.yaml", help="with --address: the jobs' runtime env file")
    args = parser.parse_args(argv)
    if (args.working_dir or args.runtime_env != parser.get_default("runtime_env")) and not args.address:
        parser.error("--working-dir and --runtime-env go with --address")
    return run_chain(args.chain, Path(args.logs), args.replace, args.start, args.until, args.root, args.dry_run,
                     args.address, args.working_dir, args.runtime_env)


if __name__ == "__main__":
    sys.exit(main())
