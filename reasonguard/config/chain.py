"""The paper's recipe as one declared chain of stage configs, checked without running anything.

A chain file (cluster/chains/gpu.yaml, cluster/chains/local.yaml) names the stages in order (stage,
config, optional `--set` overrides) and the external inputs (models, registered datasets, folders)
that no stage produces. `stage_io` lists what one validated config reads and writes (trace tables,
SFT files, checkpoints, datasets), from the same rules the stages follow (`<output_dir>/traces.parquet`,
`<output_dir>/final`, ...); `check_chain` reports every read that no earlier stage writes and that is
not declared external, every declared input nothing reads, and every output two stages would both
write. `submit_commands` prints the chain as `ray job submit` commands (docs/paper-chain.md);
`python -m jobs.chain` runs it on this machine (`replace_prefixes` moves it to another model or output root).

    python -m reasonguard.config.chain check cluster/chains/gpu.yaml
    python -m reasonguard.config.chain commands cluster/chains/gpu.yaml

Pure: configs are validated, nothing is opened but the YAML files.
"""

from __future__ import annotations

import argparse
import posixpath
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from reasonguard.config.base import ConfigError, StrictModel, load_config

Kind = Literal["traces", "sft", "model", "dataset", "path"]
TRACE_FILES = ("traces_budgets.parquet", "traces.parquet")  # a trace folder's table (reasonguard.io.trace_table_path)


def _config_models() -> dict[str, type]:
    from reasonguard.config.distill import DistillConfig
    from reasonguard.config.evaluate import EvaluateConfig
    from reasonguard.config.experiment import ExperimentConfig
    from reasonguard.config.import_traces import ImportTracesConfig
    from reasonguard.config.mine import MineConfig
    from reasonguard.config.predict import PredictConfig
    from reasonguard.config.serve import ServeConfig
    from reasonguard.config.sft_data import SftDataConfig
    from reasonguard.config.shorten import ShortenConfig
    from reasonguard.config.train import TrainConfig

    return {"distill": DistillConfig, "import_traces": ImportTracesConfig, "shorten": ShortenConfig, "sft_data": SftDataConfig,
            "train": TrainConfig, "predict": PredictConfig, "evaluate": EvaluateConfig, "mine": MineConfig,
            "experiment": ExperimentConfig, "serve": ServeConfig}


# ------------------------------------------------------------------------------------- the chain file


class ExternalInputs(StrictModel):
    """What the chain reads but no stage of it writes: declared, so a typo in a path cannot pass as one."""

    models: list[str] = Field(default_factory=list, description="Model ids, aliases or paths (teachers, students, references).")
    datasets: list[str] = Field(default_factory=list, description="Registered dataset names, and suites as 'suite:<name>'.")
    paths: list[str] = Field(default_factory=list, description="Folders and files (the datasets folder, your own data).")


class ChainStage(StrictModel):
    stage: str = Field(description="A stage with a `jobs.<stage>` module (distill, shorten, sft_data, train, ...).")
    config: str = Field(description="The stage's config, relative to the repository root.")
    set: dict[str, Any] = Field(default_factory=dict, description="`--set` overrides (dotted keys), as on the command line.")


class Chain(StrictModel):
    """An ordered list of stage configs and the chain's external inputs."""

    description: str = ""
    external: ExternalInputs = Field(default_factory=ExternalInputs)
    stages: list[ChainStage] = Field(min_length=1)


def load_chain(path: str | Path) -> Chain:
    return load_config(path, Chain)


def load_stage_configs(chain: Chain, root: str | Path = ".") -> list:
    """Each stage's validated config (its overrides applied), in chain order."""
    models = _config_models()
    configs = []
    for entry in chain.stages:
        if entry.stage not in models:
            raise ConfigError(f"chain stage {entry.stage!r}: no I/O rule; stages: {', '.join(models)}")
        configs.append(load_config(Path(root) / entry.config, models[entry.stage], dict(entry.set)))
    return configs


# ------------------------------------------------------------------------------------- reads and writes


@dataclass(frozen=True)
class Artifact:
    kind: Kind
    ref: str  # a normalised path, a model id or alias, a dataset name or 'suite:<name>'

    def __str__(self) -> str:
        return f"{self.kind} {self.ref}"


@dataclass(frozen=True)
class StageIO:
    reads: tuple[Artifact, ...]
    writes: tuple[Artifact, ...]


def _norm(path: str) -> str:
    return posixpath.normpath(path) if "://" not in path else path.rstrip("/")


def _join(*parts: str) -> str:
    return _norm(posixpath.join(*parts))


class _IO:
    def __init__(self) -> None:
        self.reads: list[Artifact] = []
        self.writes: list[Artifact] = []

    def read(self, kind: Kind, ref: str | None) -> None:
        if ref:
            self.reads.append(Artifact(kind, _norm(ref)))  # a hub id or dataset name is its own normal form

    def write(self, kind: Kind, ref: str) -> None:
        self.writes.append(Artifact(kind, _norm(ref)))

    def source(self, src) -> None:
        """A DataSource: a registered dataset (and the folder it is read from) or a table file."""
        self.read("dataset", src.dataset)
        self.read("path", src.path)
        self.read("path", src.root)

    def engine(self, engine, tokenizer: str | None = None) -> None:
        if engine is not None:
            self.read("model", engine.model)
        self.read("model", tokenizer)

    def merge(self, other: "StageIO", produced: tuple[Artifact, ...] = ()) -> None:
        """Another config's reads, less those this stage produces itself (a study's own checkpoints)."""
        self.reads += [r for r in other.reads if not any(_satisfies(w, r) for w in produced)]

    def done(self) -> StageIO:
        return StageIO(tuple(dict.fromkeys(self.reads)), tuple(dict.fromkeys(self.writes)))


def stage_io(stage: str, config) -> StageIO:
    """What a validated stage config reads and writes."""
    io = _IO()
    rule = _RULES.get(stage)
    if rule is None:
        raise ValueError(f"no I/O rule for stage {stage!r}; stages: {', '.join(_RULES)}")
    rule(config, io)
    return io.done()


def _distill(c, io: _IO) -> None:
    io.engine(c.engine, c.tokenizer)
    for src in c.data:
        io.source(src)
    io.write("traces", _join(c.output_dir, "traces.parquet"))


def _import_traces(c, io: _IO) -> None:
    io.read("model", c.tokenizer)
    for src in c.sources:
        io.read("path", src.path)
    io.write("traces", _join(c.output_dir, "traces.parquet"))


def _shorten(c, io: _IO) -> None:
    io.read("traces", c.traces)
    io.engine(c.engine, c.tokenizer)
    io.write("traces", _join(c.output_dir, "traces_budgets.parquet"))
    for budget in c.budgets:
        io.write("traces", _join(c.output_dir, f"traces_budget_{budget}.parquet"))


def _sft_reads(c, io: _IO) -> None:
    for path in c.traces:
        io.read("traces", path)
    for src in [*c.labelled, *c.held_out]:
        io.source(src)
    if c.topic_following is not None:
        io.read("dataset", c.topic_following.dataset)
        io.read("path", c.topic_following.root)


def _sft_data(c, io: _IO) -> None:
    _sft_reads(c, io)
    io.write("sft", c.output)


def _train(c, io: _IO) -> None:
    io.read("model", c.model)
    io.read("sft", c.data.sft_path)
    if c.data.build is not None:
        _sft_reads(c.data.build, io)
    io.write("model", _join(c.output_dir, "final"))


def _predict(c, io: _IO) -> None:
    io.engine(c.engine)
    for src in c.data:
        io.source(src)
    if c.suite:
        io.read("dataset", f"suite:{c.suite}")
        io.read("path", c.datasets_root)
    if c.decoding.calibration not in (None, "auto"):
        io.read("path", c.decoding.calibration)
    io.write("path", _join(c.output_dir, "predictions"))


def _evaluate(c, io: _IO) -> None:
    for guard in c.guards:
        io.merge(stage_io("predict", c.predict_config(guard)))
    io.write("path", c.output_dir)


def _mine(c, io: _IO) -> None:
    io.engine(c.guard)
    for src in c.pool:
        io.source(src)
    io.read("traces", c.pool_traces)
    difficult = Artifact("traces", _join(c.output_dir, "difficult.parquet"))
    io.write(difficult.kind, difficult.ref)
    if c.train is not None:
        train = stage_io("train", c.train_config(difficult.ref))
        io.merge(train, produced=(difficult,))
        io.writes += train.writes


def _experiment(c, io: _IO) -> None:
    produced: list[Artifact] = []
    trains = []
    if c.study == "refinement":
        round1 = c.train_config("round1")
        trains.append(round1)
        mine = c.mine_config(_join(round1.output_dir, "final"), _join(c.output_dir, "mine"))
        mine_io = stage_io("mine", mine)
        produced += [*stage_io("train", round1).writes, *mine_io.writes,
                     Artifact("traces", _join(c.output_dir, "mine", "random.parquet"))]
        for value in c.sweep():
            trains.append(c.train_config(c.variant_name(value), model=_join(round1.output_dir, "final"),
                                         data={"build": _refinement_build(c, mine, value), "sft_path": None}))
        io.merge(mine_io, produced=tuple(produced))
    else:
        trains += [c.train_config(c.variant_name(v), v) for v in c.sweep()]
    for train in trains:
        produced += stage_io("train", train).writes
    for train in trains:
        io.merge(stage_io("train", train), produced=tuple(produced))
    guards = [{"name": Path(t.output_dir).parent.name, "engine": {**c.guard_engine, "model": _join(t.output_dir, "final")}}
              for t in trains]
    if c.include_base:
        guards.append({"name": "base", "engine": {**c.guard_engine, "model": c.train["model"]}})
    io.merge(stage_io("evaluate", c.evaluate_config(guards)), produced=tuple(produced))
    io.writes += produced
    io.write("path", c.output_dir)


def _refinement_build(c, mine, value: str) -> dict:
    """The continual-SFT build of a refinement variant (pipelines.experiment.deep_build): the mined difficult
    items, or as many random pool items."""
    build = dict((c.train.get("data") or {}).get("build") or {})
    traces = _join(mine.output_dir, "difficult.parquet" if value == "difficult" else "random.parquet")
    build.update({"traces": [traces], "labelled": [], "subset_size": None, "topic_following": None})
    return build


def _serve(c, io: _IO) -> None:
    io.engine(c.engine)


_RULES = {"distill": _distill, "import_traces": _import_traces, "shorten": _shorten, "sft_data": _sft_data, "train": _train,
          "predict": _predict, "evaluate": _evaluate, "mine": _mine, "experiment": _experiment, "serve": _serve}


# ------------------------------------------------------------------------------------- the check


def _satisfies(written: Artifact, read: Artifact) -> bool:
    """A written artifact serves a read of the same kind at the same path; a trace table also serves a
    read of the folder that holds it (a distill/shorten output_dir)."""
    if written.ref == read.ref:
        return written.kind == read.kind or read.kind == "path"
    if read.kind == "traces" and written.kind == "traces":
        folder, name = posixpath.split(written.ref)
        return folder == read.ref and name in TRACE_FILES
    return False


def _external(read: Artifact, external: ExternalInputs) -> bool:
    declared = {"dataset": external.datasets, "model": external.models}.get(read.kind, [])
    return read.ref in {_norm(r) for r in [*declared, *external.paths]}


def check_chain(chain: Chain, configs: list) -> list[str]:
    """Problems of a chain, one line each; [] when every read is produced earlier or declared external."""
    problems: list[str] = []
    written: list[tuple[int, Artifact]] = []
    used_external: set[str] = set()
    for index, (entry, config) in enumerate(zip(chain.stages, configs, strict=True)):
        io = stage_io(entry.stage, config)
        label = f"stage {index + 1} ({entry.stage}, {entry.config})"
        for read in io.reads:
            if any(_satisfies(w, read) for _, w in written):
                continue
            if _external(read, chain.external):
                used_external.add(read.ref)
                continue
            later = [i for i, e in enumerate(chain.stages) if i > index and any(_satisfies(w, read) for w in stage_io(e.stage, configs[i]).writes)]
            hint = f"; stage {later[0] + 1} ({chain.stages[later[0]].stage}) writes it, after" if later else ""
            problems.append(f"{label} reads {read}: no earlier stage writes it and it is not a declared external input{hint}")
        for artifact in io.writes:
            clash = [i for i, w in written if w.ref == artifact.ref]
            if clash:
                problems.append(f"{label} writes {artifact}, which stage {clash[0] + 1} ({chain.stages[clash[0]].stage}) "
                                "also writes")
        written += [(index, w) for w in io.writes]
    declared = [_norm(r) for r in [*chain.external.models, *chain.external.datasets, *chain.external.paths]]
    problems += [f"external input {ref} is declared but no stage reads it" for ref in declared if ref not in used_external]
    return problems


def check_chain_file(path: str | Path, root: str | Path = ".") -> list[str]:
    chain = load_chain(path)
    return check_chain(chain, load_stage_configs(chain, root))


# ------------------------------------------------------------------------------------- commands


def submit_command(entry: ChainStage, prefix: str = "ray job submit $RT --") -> str:
    sets = "".join(f" --set {shlex.quote(f'{k}={_yaml_scalar(v)}')}" for k, v in entry.set.items())
    return f"{prefix} python -m jobs.{entry.stage} --config {entry.config}{sets}"


def _yaml_scalar(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip().removesuffix("\n...")


def submit_commands(chain: Chain, prefix: str = "ray job submit $RT --") -> list[str]:
    return [submit_command(entry, prefix) for entry in chain.stages]


# ------------------------------------------------------------------------------------- another scale or place


def parse_replacements(pairs: list[str]) -> list[tuple[str, str]]:
    """`OLD=NEW` pairs (`--replace smollm2=tiny --replace outputs/=outputs/chain_tiny/`)."""
    out = []
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old:
            raise ConfigError(f"--replace {pair!r}: expected OLD=NEW with a non-empty OLD")
        out.append((old, new))
    return out


def replace_prefixes(value: Any, replacements: list[tuple[str, str]]) -> Any:
    """`value` (a config document, a `set` mapping) with every string that starts with an OLD starting
    with its NEW instead (first match wins): a model alias (`smollm2` -> `tiny`) or an output root
    (`outputs/` -> `outputs/chain_tiny/`) changes in every stage at once, and the chain stays one chain."""
    if isinstance(value, str):
        for old, new in replacements:
            if value.startswith(old):
                return new + value[len(old):]
        return value
    if isinstance(value, dict):
        return {k: replace_prefixes(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_prefixes(v, replacements) for v in value]
    return value


def select_stages(chain: Chain, start: str | None = None, until: str | None = None) -> list[int]:
    """0-based indices of the stages to run: from `start` through `until`, each a 1-based position or a
    stage name (its first occurrence; `until`: its last)."""
    def position(ref: str, last: bool) -> int:
        if ref.isdigit():
            index = int(ref) - 1
            if not 0 <= index < len(chain.stages):
                raise ConfigError(f"stage {ref}: the chain has stages 1..{len(chain.stages)}")
            return index
        found = [i for i, e in enumerate(chain.stages) if e.stage == ref]
        if not found:
            raise ConfigError(f"no stage {ref!r} in the chain; stages: {', '.join(dict.fromkeys(e.stage for e in chain.stages))}")
        return found[-1] if last else found[0]

    first = position(start, last=False) if start else 0
    last = position(until, last=True) if until else len(chain.stages) - 1
    if first > last:
        raise ConfigError(f"--from {start} comes after --until {until}")
    return list(range(first, last + 1))


def stage_argv(entry: ChainStage) -> list[str]:
    """The stage as a local process's arguments after the interpreter (`-m jobs.<stage> --config ... --set ...`)."""
    return ["-m", f"jobs.{entry.stage}", "--config", entry.config,
            *[arg for k, v in entry.set.items() for arg in ("--set", f"{k}={_yaml_scalar(v)}")]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasonguard.config.chain", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["check", "commands", "io"])
    parser.add_argument("chain", help="a chain file, e.g. cluster/chains/gpu.yaml")
    parser.add_argument("--root", default=".", help="repository root the config paths are relative to")
    args = parser.parse_args(argv)
    try:
        chain = load_chain(args.chain)
        configs = load_stage_configs(chain, args.root)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.action == "commands":
        print("\n".join(submit_commands(chain)))
        return 0
    if args.action == "io":
        for entry, config in zip(chain.stages, configs):
            io = stage_io(entry.stage, config)
            print(f"{entry.stage} ({entry.config})")
            print("".join(f"  reads  {a}\n" for a in io.reads) + "".join(f"  writes {a}\n" for a in io.writes), end="")
        return 0
    problems = check_chain(chain, configs)
    print("\n".join(problems) or f"{args.chain}: {len(chain.stages)} stages, every input produced earlier or declared")
    return 1 if problems else 0


__all__ = ["Artifact", "Chain", "ChainStage", "ExternalInputs", "StageIO", "check_chain", "check_chain_file", "load_chain",
           "load_stage_configs", "parse_replacements", "replace_prefixes", "select_stages", "stage_argv",
           "stage_io", "submit_command", "submit_commands"]


if __name__ == "__main__":
    sys.exit(main())
