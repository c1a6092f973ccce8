"""The paper's recipe as one chain of configs (cluster/chains/*.yaml), walked statically: every path a
stage reads is written by an earlier stage or declared as an external input. Pure: configs are
validated, no data or model is opened."""

from __future__ import annotations

import copy

import pytest

from reasonguard.config.chain import (
    Artifact, Chain, check_chain, load_chain, load_stage_configs, stage_io, submit_commands,
)

CHAINS = ["gpu", "local"]
# *_gpu.yaml configs that are not stages of the GPU chain, and why.
GPU_ALTERNATIVES = {
    "train_gemma3_4b_gpu.yaml": "the same file as train_gpu.yaml (tests/train keeps them equal)",
    "train_llama31_8b_gpu.yaml": "the paper's other student: replaces train_gpu.yaml (then --set the readers' model)",
}


def _chain(repo_root, name: str) -> tuple[Chain, list]:
    chain = load_chain(repo_root / f"cluster/chains/{name}.yaml")
    return chain, load_stage_configs(chain, repo_root)


@pytest.mark.parametrize("name", CHAINS)
def test_every_input_is_written_earlier_or_declared(repo_root, name):
    chain, configs = _chain(repo_root, name)
    assert check_chain(chain, configs) == []


@pytest.mark.parametrize("name", CHAINS)
def test_chain_runs_the_recipe_in_the_papers_order(repo_root, name):
    chain, _ = _chain(repo_root, name)
    stages = [s.stage for s in chain.stages]
    first = {stage: stages.index(stage) for stage in stages}
    order = ["distill", "shorten", "sft_data", "train", "predict", "evaluate", "mine", "experiment", "serve"]
    assert [first[s] for s in order] == sorted(first[s] for s in order), stages
    studies = {c.split("experiment_", 1)[1].rsplit("_", 1)[0] for c in (s.config for s in chain.stages) if "experiment_" in c}
    assert studies == {"sample_efficiency", "budget", "dual_mode", "refinement", "custom_policy"}


def test_every_gpu_config_is_a_stage_of_the_gpu_chain(repo_root):
    chain, _ = _chain(repo_root, "gpu")
    in_chain = {s.config.rsplit("/", 1)[1] for s in chain.stages}
    shipped = {p.name for p in (repo_root / "cluster/configs").glob("*_gpu.yaml")}
    assert shipped - in_chain == set(GPU_ALTERNATIVES)
    assert all(s.config.endswith("_gpu.yaml") for s in chain.stages)


def test_local_chain_mirrors_the_gpu_chain(repo_root):
    gpu, _ = _chain(repo_root, "gpu")
    local, _ = _chain(repo_root, "local")
    assert [(s.stage, s.config.replace("_gpu.yaml", "")) for s in gpu.stages] == \
        [(s.stage, s.config.replace("_local.yaml", "")) for s in local.stages]


# ------------------------------------------------------------------------------ the check can fail


def _mutated(repo_root, edit) -> list[str]:
    chain, _ = _chain(repo_root, "gpu")
    data = copy.deepcopy(chain.model_dump())
    edit(data)
    broken = Chain.model_validate(data)
    return check_chain(broken, load_stage_configs(broken, repo_root))


def _move(data, stage_config: str, to: int):
    stages = data["stages"]
    entry = next(s for s in stages if s["config"].endswith(stage_config))
    stages.remove(entry)
    stages.insert(to, entry)


def test_a_stage_before_its_input_is_reported_with_the_stage_that_writes_it(repo_root):
    problems = _mutated(repo_root, lambda d: _move(d, "train_gpu.yaml", 0))
    assert any("(train, cluster/configs/train_gpu.yaml) reads sft /mnt/shared/outputs/sft/sft.parquet" in p
               and "(sft_data) writes it, after" in p for p in problems), problems


def test_a_misspelt_path_is_reported(repo_root):
    def typo(d):
        next(s for s in d["stages"] if s["config"].endswith("predict_gpu.yaml"))["set"] = {
            "engine.model": "/mnt/shared/outputs/train/gemma3-4b-guard"}  # the output_dir, not its final/ checkpoint
    problems = _mutated(repo_root, typo)
    assert problems == ["stage 7 (predict, cluster/configs/predict_gpu.yaml) reads model /mnt/shared/outputs/train/"
                        "gemma3-4b-guard: no earlier stage writes it and it is not a declared external input"]


def test_undeclared_and_unused_external_inputs_are_reported(repo_root):
    def edit(d):
        d["external"]["models"].remove("Qwen/Qwen3-32B")
        d["external"]["paths"].append("/mnt/shared/nothing")
    problems = _mutated(repo_root, edit)
    assert sum("reads model Qwen/Qwen3-32B" in p for p in problems) == 4  # distill x2, shorten x2
    assert "external input /mnt/shared/nothing is declared but no stage reads it" in problems


def test_two_stages_writing_one_output_are_reported(repo_root):
    def edit(d):
        d["stages"].insert(1, copy.deepcopy(d["stages"][0]))
    problems = _mutated(repo_root, edit)
    assert any("writes traces /mnt/shared/outputs/distill/traces.parquet, which stage 1 (distill) also writes" in p
               for p in problems)


# ------------------------------------------------------------------------------ the I/O rules


def test_stage_io_follows_the_stages_file_rules(repo_root):
    chain, configs = _chain(repo_root, "gpu")
    by_config = {s.config.rsplit("/", 1)[1]: (s.stage, c) for s, c in zip(chain.stages, configs)}
    shorten = stage_io(*by_config["shorten_gpu.yaml"])
    assert Artifact("traces", "/mnt/shared/outputs/distill") in shorten.reads
    assert Artifact("traces", "/mnt/shared/outputs/shorten/traces_budgets.parquet") in shorten.writes
    mine = stage_io(*by_config["mine_gpu.yaml"])
    assert Artifact("model", "/mnt/shared/outputs/train/gemma3-4b-guard-refined/final") in mine.writes
    assert Artifact("traces", "/mnt/shared/outputs/mine/difficult.parquet") not in mine.reads  # its own output
    refinement = stage_io(*by_config["experiment_refinement_gpu.yaml"])
    assert not any("experiment_refinement" in r.ref for r in refinement.reads)  # round 1, mined sets: its own
    assert Artifact("model", "/mnt/shared/outputs/experiment_refinement/refined-random/train/final") in refinement.writes
    custom = stage_io(*by_config["experiment_custom_policy_gpu.yaml"])
    assert Artifact("traces", "/mnt/shared/outputs/shorten_topic/traces_budgets.parquet") in custom.reads
    assert Artifact("dataset", "topic_following_test") in custom.reads


def test_submit_commands_carry_the_overrides(repo_root):
    chain, _ = _chain(repo_root, "local")
    commands = submit_commands(chain)
    assert commands[0] == "ray job submit $RT -- python -m jobs.distill --config cluster/configs/distill_local.yaml"
    assert ("ray job submit $RT -- python -m jobs.sft_data --config cluster/configs/sft_data_local.yaml "
            "--set 'traces=[outputs/shorten_local, outputs/shorten_topic_local]' "
            "--set 'labelled=[{dataset: demo, limit: 24, split: train}]'") in commands  # a list of mappings on one line
    assert len(commands) == len(chain.stages)


# ------------------------------------------------------------------------------------- another scale or place


def test_replace_prefixes_rewrites_aliases_and_path_roots_everywhere():
    from reasonguard.config.chain import replace_prefixes

    pairs = [("smollm2", "tiny"), ("outputs/", "outputs/t/")]
    doc = {"model": "smollm2", "engine": {"model": "smollm2", "kind": "vllm"}, "output_dir": "outputs/x",
           "traces": ["outputs/a", "elsewhere/outputs/b"], "run_name": "sft-smollm2-local", "limit": 24, "flag": None}
    assert replace_prefixes(doc, pairs) == {
        "model": "tiny", "engine": {"model": "tiny", "kind": "vllm"}, "output_dir": "outputs/t/x",
        "traces": ["outputs/t/a", "elsewhere/outputs/b"], "run_name": "sft-smollm2-local", "limit": 24, "flag": None}
    assert replace_prefixes("outputs/x", [("out", "A"), ("outputs/", "B")]) == "Aputs/x"  # the first match wins


def test_a_replacement_without_old_is_refused():
    from reasonguard.config import ConfigError
    from reasonguard.config.chain import parse_replacements

    assert parse_replacements(["smollm2=tiny", "a=b=c"]) == [("smollm2", "tiny"), ("a", "b=c")]
    for bad in ("smollm2", "=tiny"):
        with pytest.raises(ConfigError, match="OLD=NEW"):
            parse_replacements([bad])


def test_the_local_chain_moved_to_the_tiny_model_and_another_root_still_chains(repo_root, tmp_path):
    from jobs.chain import rewrite_chain
    from reasonguard.config.chain import stage_argv

    chain = load_chain(repo_root / "cluster/chains/local.yaml")
    moved = rewrite_chain(chain, [("smollm2", "tiny"), ("outputs/", "outputs/tiny/")], repo_root, tmp_path)
    configs = load_stage_configs(moved, repo_root)
    assert check_chain(moved, configs) == []
    assert len(list(tmp_path.glob("*.yaml"))) == len(chain.stages) == len(moved.stages)
    assert "tiny" in moved.external.models and "smollm2" not in moved.external.models
    train = configs[[s.stage for s in moved.stages].index("train")]
    assert train.model == "tiny" and str(train.output_dir) == "outputs/tiny/train_local"
    predict = moved.stages[[s.stage for s in moved.stages].index("predict")]
    assert stage_argv(predict) == ["-m", "jobs.predict", "--config", predict.config,
                                   "--set", "engine.model=outputs/tiny/train_local/final"]
    assert rewrite_chain(chain, [], repo_root, tmp_path / "unused") is chain and not (tmp_path / "unused").exists()


def test_select_stages_by_position_or_name(repo_root):
    from reasonguard.config import ConfigError
    from reasonguard.config.chain import select_stages

    chain = load_chain(repo_root / "cluster/chains/local.yaml")
    n = len(chain.stages)
    assert select_stages(chain) == list(range(n))
    assert select_stages(chain, "3", "4") == [2, 3]
    stages = [s.stage for s in chain.stages]
    assert select_stages(chain, "evaluate", "evaluate") == list(range(stages.index("evaluate"), n - 1 - stages[::-1].index("evaluate") + 1))
    assert select_stages(chain, "serve") == [n - 1]
    for start, until, message in (("0", None, "stages 1.."), (str(n + 1), None, "stages 1.."),
                                  ("nosuch", None, "no stage 'nosuch'"), ("serve", "distill", "comes after")):
        with pytest.raises(ConfigError, match=message):
            select_stages(chain, start, until)
