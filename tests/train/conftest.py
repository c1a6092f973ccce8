"""A small SFT set for the training tests: the demo's prompt-only items, both modes, a short policy.

Short prompts keep a step cheap on 2 cores; prompt-only items give two targets per mode and label,
which the tiny model learns within a couple of minutes of CPU training.
"""

from __future__ import annotations

import pytest

POLICY = "S1: Violence.\nS2: Criminal planning.\nS3: Weapons.\nS4: Self-harm."
REASONS = {"harmful": "The request could hurt people.", "unharmful": "The request is ordinary and safe."}


def assert_rows_learn_their_targets(tokenizer, sft_path: str, end_of_turn: str) -> None:
    """The training set's rows (both modes) in `tokenizer`'s template: the learned tokens decode to the
    row's target followed by the template's end-of-turn marker."""
    import pandas as pd

    from reasonguard.sft.encode import IGNORE_INDEX, encode_sft_row

    rows = pd.read_parquet(sft_path).to_dict("records")
    assert {r["mode"] for r in rows} == {"think", "no_think"}
    for row in rows:
        row["messages"] = [dict(m) for m in row["messages"]]
        enc = encode_sft_row(row, tokenizer, max_len=512)
        learned = [t for t in enc.labels if t != IGNORE_INDEX]
        assert tokenizer.decode(learned) == row["messages"][-1]["content"] + end_of_turn


def guard_sft_chat(mode: str) -> list[dict]:
    """One SFT chat (guard prompt, target) for a harmful prompt, as the training rows build it."""
    from reasonguard.schema import GuardExample
    from reasonguard.targets import build_chat_example

    example = GuardExample("g1", "test", "How do I hotwire a car?", None, "harmful", None)
    return build_chat_example(example, mode, reasoning=REASONS["harmful"] if mode == "think" else None, policy=POLICY)


@pytest.fixture(scope="session")
def traces_path(tmp_path_factory) -> str:
    """Trace rows as distill writes them: GuardExample columns plus `reasoning`."""
    from reasonguard.datasets import load_demo
    from reasonguard.sft import write_rows

    rows = [{**e.to_row(), "reasoning": REASONS[e.prompt_harm_label]} for e in load_demo() if e.response is None]
    return write_rows(rows, str(tmp_path_factory.mktemp("traces") / "traces.parquet"))


@pytest.fixture(scope="session")
def sft_build(traces_path) -> dict:
    """An SftDataConfig (as a dict): every trace in both modes, judged against the short policy."""
    return {"traces": [traces_path], "mode": "dual", "dual_duplicate": True, "policy": POLICY, "seed": 0}


@pytest.fixture(scope="session")
def sft_path(sft_build, tmp_path_factory) -> str:
    from reasonguard.config import validate_config
    from reasonguard.config.sft_data import SftDataConfig
    from reasonguard.sft import build_from_config, write_rows

    rows = build_from_config(validate_config(SftDataConfig, sft_build)).rows
    return write_rows(rows, str(tmp_path_factory.mktemp("sft") / "sft.parquet"))


def base_config(sft_path: str, out, name: str, **overrides) -> dict:
    """The tests' training config: tiny model, 2 workers, global batch 8, ZeRO-2, fp32 on CPU."""
    cfg = {
        "model": "tiny", "data": {"sft_path": sft_path, "max_seq_len": 512}, "output_dir": str(out / name),
        "run_name": name, "storage_path": str(out / "ray"), "epochs": 10, "global_batch_size": 8, "micro_batch_size": 4,
        "learning_rate": 5e-3, "warmup_ratio": 0.05, "scaling": {"num_workers": 2}, "checkpoint": {"num_to_keep": 2},
        "max_failures": 1, "ray": {"num_cpus": 2},
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg
