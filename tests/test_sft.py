"""SFT data builder: sources, budgets, modes, subsets, topic mix, token labels, truncation, packing.

The tokenizer is the tiny model's (the real SmolLM2 tokenizer and chat template); no model is loaded.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from reasonguard.config import ConfigError, validate_config
from reasonguard.config.sft_data import SftDataConfig
from reasonguard.prompts import mode_of_prompt
from reasonguard.schema import GuardExample
from reasonguard.sft import (
    IGNORE_INDEX,
    SourceItem,
    assign_modes,
    build_from_config,
    build_sft_rows,
    encode_chat,
    encode_rows,
    encode_sft_row,
    items_from_examples,
    items_from_traces,
    pack_sequences,
    read_rows,
    reasoning_column,
    stratified_subset,
    write_rows,
)
from reasonguard.verdict import parse_verdict


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _example(i: int, label: str = "harmful", response: str | None = None, response_label: str | None = None, **kw) -> GuardExample:
    return GuardExample(id=f"ex:{i}", source="t", prompt=f"prompt number {i}", response=response,
                        prompt_harm_label=label, response_harm_label=response_label, split="train", **kw)


def _trace_row(i: int, label: str = "harmful", **cols) -> dict:
    return {**_example(i, label).to_row(), "reasoning": f"Full reasoning {i}. It has two sentences.",
            "reasoning_1": f"Short {i}.", "reasoning_3": f"Medium {i}. Two.", **cols}


# ---------------------------------------------------------------- sources and budgets


def test_budget_columns():
    assert reasoning_column("full") == "reasoning"
    assert reasoning_column(1) == "reasoning_1" and reasoning_column(3) == "reasoning_3"
    with pytest.raises(ValueError):
        reasoning_column(0)


def test_items_from_traces_pick_budget_and_skip_dropped():
    rows = [_trace_row(0), _trace_row(1, kept=False), _trace_row(2, reasoning_1=None)]
    full = items_from_traces(rows, "full")
    assert [it.example.id for it in full] == ["ex:0", "ex:2"]
    assert full[0].reasoning.startswith("Full reasoning 0")
    short = items_from_traces(rows, 1)
    assert short[0].reasoning == "Short 0." and short[1].reasoning is None  # missing budget: no think target
    assert all(it.origin == "traces" for it in short)


def test_missing_budget_column_is_a_clear_error():
    rows = [{k: v for k, v in _trace_row(0).items() if k != "reasoning_3"}]
    with pytest.raises(ValueError, match="reasoning_3"):
        items_from_traces(rows, 3)


# ---------------------------------------------------------------- modes and subsets


def test_modes_think_only_no_think_only_and_dual_ratio():
    items = [SourceItem(_example(i), f"r{i}" if i < 8 else None) for i in range(10)]
    think, skipped = assign_modes(items, "think")
    assert len(think) == 8 and skipped["no_trace"] == 2 and {m for _, m in think} == {"think"}
    no_think, _ = assign_modes(items, "no_think")
    assert len(no_think) == 10 and {m for _, m in no_think} == {"no_think"}
    dual, _ = assign_modes(items, "dual", think_ratio=0.25, seed=1)
    assert len(dual) == 10 and Counter(m for _, m in dual)["think"] == 2  # 25% of the 8 with a trace
    assert all(it.reasoning for it, m in dual if m == "think")
    both, _ = assign_modes(items, "dual", duplicate=True)
    assert Counter(m for _, m in both) == {"think": 8, "no_think": 10}


def test_dual_mode_rows_have_flag_and_think_block_only_in_reasoning_targets():
    items = [SourceItem(_example(i), f"Reason {i}.") for i in range(6)]
    rows = build_sft_rows(items, mode="dual", think_ratio=0.5, seed=0).rows
    assert Counter(r["mode"] for r in rows) == {"think": 3, "no_think": 3}
    for r in rows:
        user, target = r["messages"][0]["content"], r["messages"][1]["content"]
        assert mode_of_prompt(user) == r["mode"]
        assert ("<think>" in target) == (r["mode"] == "think")
        verdict = parse_verdict(target)
        assert verdict.parsed_ok and verdict.prompt_harm == "harmful"


def test_stratified_subset_keeps_label_shares_is_seeded_and_nests():
    items = [SourceItem(_example(i, "harmful" if i % 4 == 0 else "unharmful")) for i in range(400)]
    sub = stratified_subset(items, 100, seed=3)
    assert len(sub) == 100
    assert Counter(it.example.prompt_harm_label for it in sub) == {"harmful": 25, "unharmful": 75}
    assert [it.example.id for it in stratified_subset(items, 100, seed=3)] == [it.example.id for it in sub]
    assert {it.example.id for it in stratified_subset(items, 100, seed=4)} != {it.example.id for it in sub}
    small = {it.example.id for it in stratified_subset(items, 40, seed=3)}
    assert small <= {it.example.id for it in sub}  # sample-efficiency subsets nest
    assert len(stratified_subset(items, 1000)) == 400


def test_traces_win_over_labelled_duplicates_and_unlabelled_are_skipped():
    traces = items_from_traces([_trace_row(0), _trace_row(1)])
    labelled = items_from_examples([_example(1), _example(2), GuardExample(id="u", source="t", prompt="p")])
    result = build_sft_rows(traces, labelled, mode="no_think")
    assert sorted(r["id"] for r in result.rows) == ["ex:0", "ex:1", "ex:2"]
    assert next(r for r in result.rows if r["id"] == "ex:1")["origin"] == "traces"
    assert result.stats["skipped"] == {"duplicate_id": 1, "no_prompt_label": 1}


def test_topic_following_mix_keeps_each_rows_policy():
    topic = [SourceItem(_example(100 + i, "harmful" if i % 2 else "unharmful", extra={"policy": "Only talk about trains."}),
                        origin="topic_following") for i in range(10)]
    topic.append(SourceItem(GuardExample(id="tu", source="topic_following", prompt="?"), origin="topic_following"))
    result = build_sft_rows([SourceItem(_example(0), "r")], mode="dual", think_ratio=1.0, topic_following=topic, topic_size=4)
    topic_rows = [r for r in result.rows if r["origin"] == "topic_following"]
    assert len(topic_rows) == 4 and {r["prompt_harm_label"] for r in topic_rows} == {"harmful", "unharmful"}
    assert all("Only talk about trains." in r["messages"][0]["content"] and r["mode"] == "no_think" for r in topic_rows)
    assert result.stats["skipped"]["topic_unlabelled"] == 1


def test_registered_topic_following_dataset_mixes_in(tmp_path):
    path = tmp_path / "traces.parquet"
    write_rows([_trace_row(i) for i in range(4)], str(path))
    cfg = validate_config(SftDataConfig, {"traces": [str(path)], "topic_following": {"size": 20}, "seed": 1})
    try:
        result = build_from_config(cfg)
    except FileNotFoundError as exc:  # the vendored datasets folder is absent on this machine
        pytest.skip(f"topic-following data not available: {exc}")
    assert result.stats["by_origin"] == {"traces": 4, "topic_following": 20}
    assert result.stats["inputs"]["topic_following"] > 1000


def test_config_validation():
    with pytest.raises(ConfigError, match="at least one"):
        validate_config(SftDataConfig, {})
    with pytest.raises(ConfigError, match="think"):
        validate_config(SftDataConfig, {"traces": ["x"], "mode": "think", "labelled": [{"dataset": "demo"}]})
    assert validate_config(SftDataConfig, {"traces": ["x"], "budget": "3"}).budget == 3
    with pytest.raises(ConfigError):
        validate_config(SftDataConfig, {"traces": ["x"], "budget": 0})


def test_rows_round_trip_parquet_and_jsonl(tmp_path):
    rows = build_sft_rows(items_from_traces([_trace_row(i) for i in range(5)]), mode="dual").rows
    for name in ("sft.parquet", "sft.jsonl"):
        path = write_rows(rows, str(tmp_path / name))
        back = read_rows(path)
        assert [r["key"] for r in back] == [r["key"] for r in rows]
        assert [dict(m) for m in back[0]["messages"]] == rows[0]["messages"]
        assert json.loads(back[0]["extra"]) == {}


# ---------------------------------------------------------------- tokens


def test_masked_labels_decode_exactly_to_the_target(tokenizer):
    items = [SourceItem(_example(0, response="Sure, here it is.", response_label="harmful"), "It asks for harm.")]
    for row in build_sft_rows(items, mode="dual", duplicate=True).rows:
        chat = encode_chat(tokenizer, row["messages"])
        target = row["messages"][1]["content"]
        assert tokenizer.decode(chat.target) == target
        learned = [t for t, lab in zip(chat.input_ids, chat.labels) if lab != IGNORE_INDEX]
        assert tokenizer.decode(learned) == target + tokenizer.eos_token  # the end-of-turn marker is learned too
        assert learned == chat.target + chat.end
        # Everything before the target is exactly the prompt vLLM renders for generation.
        prompt = tokenizer.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
        assert tokenizer.decode(chat.input_ids[: len(chat.prompt)]) == prompt


def test_truncation_shrinks_conversation_then_reasoning_never_the_verdict(tokenizer):
    long = " ".join(f"w{i}" for i in range(600))
    ex = GuardExample(id="long", source="t", prompt="Tell me " + long, response="Sure " + long,
                      prompt_harm_label="harmful", response_harm_label="harmful")
    row = build_sft_rows([SourceItem(ex, "Reason " + long)], mode="think").rows[0]
    full = encode_chat(tokenizer, row["messages"])
    assert encode_sft_row(row, tokenizer, len(full)).truncated is False
    for max_len in (2000, 800, 620):
        enc = encode_sft_row(row, tokenizer, max_len)
        assert enc is not None and enc.truncated and len(enc.input_ids) <= max_len
        learned = tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX])
        assert learned.endswith("</think>\n\nPrompt harm: harmful\nResponse harm: harmful" + tokenizer.eos_token)
        assert learned.startswith("<think>\nReason w0")
        assert tokenizer.decode(enc.input_ids).rstrip().endswith("/think<|im_end|>\n<|im_start|>assistant\n" + learned)
    shrunk_reasoning = encode_sft_row(row, tokenizer, 620)
    assert "[...]" in tokenizer.decode([t for t, lab in zip(shrunk_reasoning.input_ids, shrunk_reasoning.labels) if lab != IGNORE_INDEX])
    assert encode_sft_row(row, tokenizer, 300) is None  # the template alone does not fit: dropped, not cut
    kept, counts = encode_rows([row, row], tokenizer, 300)
    assert kept == [] and counts["dropped_too_long"] == 2


def test_packing_restarts_positions_and_masks_boundaries(tokenizer):
    rows = build_sft_rows([SourceItem(_example(i), f"Reason {i}.") for i in range(6)], mode="dual").rows
    encoded, _ = encode_rows(rows, tokenizer, 4096)
    lengths = [len(e.input_ids) for e in encoded]
    packed = pack_sequences(encoded, 2 * max(lengths) + 10)
    assert len(packed) == 3 and sorted(k for p in packed for k in p.keys) == sorted(e.key for e in encoded)
    by_key = {e.key: e for e in encoded}
    for p in packed:
        assert len(p.input_ids) == len(p.labels) == len(p.position_ids) <= 2 * max(lengths) + 10
        starts = [i for i, pos in enumerate(p.position_ids) if pos == 0]
        assert len(starts) == len(p.keys)
        for start, key in zip(starts, p.keys):
            ex = by_key[key]
            assert p.input_ids[start:start + len(ex.input_ids)] == ex.input_ids
            assert p.labels[start] == IGNORE_INDEX
            assert p.labels[start + 1:start + len(ex.labels)] == ex.labels[1:]
    with pytest.raises(ValueError, match="max_len"):
        pack_sequences(encoded, 10)


def test_held_out_prompts_never_become_rows():
    from reasonguard.hygiene import fingerprint

    traces = items_from_traces([_trace_row(0), _trace_row(1)])
    labelled = items_from_examples([_example(2), _example(3)])
    held_out = {fingerprint("PROMPT number 1!"), fingerprint("prompt  number 3")}  # normalised: case, punctuation
    result = build_sft_rows(traces, labelled, mode="dual", held_out=held_out)
    assert sorted(r["id"] for r in result.rows) == ["ex:0", "ex:2"]
    assert result.stats["skipped"] == {"held_out": 2}
    topic = items_from_examples([_example(4), _example(5), GuardExample(id="u", source="t", prompt="prompt number 6")],
                                "topic_following")
    held_out |= {fingerprint("prompt number 5")}
    result = build_sft_rows(traces, labelled, mode="no_think", topic_following=topic, held_out=held_out)
    assert "ex:4" in {r["id"] for r in result.rows} and "ex:5" not in {r["id"] for r in result.rows}
    assert result.stats["skipped"] == {"held_out": 3, "topic_unlabelled": 1}  # a held-out turn is not "unlabelled"


def test_held_out_sources_in_the_config_keep_their_prompts_out(tmp_path):
    from reasonguard.datasets.sources import load_source
    from reasonguard.config.common import DataSource
    from reasonguard.hygiene import overlapping, training_fingerprints

    config = SftDataConfig(labelled=[{"dataset": "demo"}], held_out=[{"dataset": "demo", "split": "test"}],
                           mode="no_think", output=str(tmp_path / "sft.parquet"))
    result = build_from_config(config)
    test = load_source(DataSource(dataset="demo", split="test"))
    assert result.stats["skipped"]["held_out"] == len(test) and result.stats["inputs"]["held_out_prompts"] == len(test)
    assert overlapping(test, training_fingerprints(result.rows)) == []


def test_sft_data_job_writes_rows_and_stats(tmp_path, capsys):
    from jobs.sft_data import main

    (tmp_path / "dist").mkdir()
    write_rows([_trace_row(i, "harmful" if i % 2 else "unharmful") for i in range(10)], str(tmp_path / "dist" / "traces.parquet"))
    config = tmp_path / "sft.yaml"
    config.write_text(f"traces: [{tmp_path / 'dist'}]\nlabelled: [{{dataset: demo, split: train, limit: 5}}]\n"
                      f"budget: 1\nsubset_size: 12\noutput: {tmp_path / 'out' / 'sft.jsonl'}\n")
    assert main(["--config", str(config)]) == 0
    rows = read_rows(str(tmp_path / "out" / "sft.jsonl"))
    stats = json.loads((tmp_path / "out" / "sft.jsonl.stats.json").read_text())
    assert len(rows) == stats["rows"] == 12
    assert stats["inputs"] == {"traces": 10, "labelled": 5, "topic_following": 0, "held_out_prompts": 0}
    assert all(r["reasoning"].startswith("Short") for r in rows if r["mode"] == "think")
    assert "12 SFT rows" in capsys.readouterr().out


# ---------------------------------------------------------------- categories


def test_categories_rows_ask_and_answer_with_mapped_codes_and_the_rest_stay_plain(tokenizer):
    harmful = [GuardExample(id=f"sr:{i}", source="strongreject", prompt=f"bad {i}", prompt_harm_label="harmful",
                            categories=("Violence",) if i % 2 else ("Non-violent crimes",)) for i in range(6)]
    benign = [_example(10 + i, "unharmful") for i in range(4)]
    unmapped = [_example(20 + i, "harmful", categories=("unknown",)) for i in range(3)]  # harmful, no table: never asked
    result = build_sft_rows(items_from_examples(harmful + benign + unmapped), mode="no_think", categories_ratio=1.0)
    rows = {r["id"]: r for r in result.rows}
    assert result.stats["categories"] == {"rows_asking": 10, "eligible": 10, "by_code": {"S1": 3, "S3": 3}}
    assert rows["sr:1"]["category_codes"] == ["S1"] and rows["sr:0"]["category_codes"] == ["S3"]
    assert rows["sr:1"]["messages"][1]["content"] == "Prompt harm: harmful\nResponse harm: None\nSafety categories: S1"
    assert rows["ex:10"]["messages"][1]["content"].endswith("\nSafety categories: None")
    assert all(rows[f"ex:{20 + i}"]["category_codes"] is None for i in range(3))
    assert "Safety categories" not in rows["ex:20"]["messages"][0]["content"] + rows["ex:20"]["messages"][1]["content"]
    asked = rows["sr:1"]["messages"][0]["content"]
    assert "Safety categories: <codes, e.g. S1, S10>" in asked and mode_of_prompt(asked) == "no_think"
    # The trainer re-renders a row (shortened) from its columns: the categories stay.
    from reasonguard.sft import messages_of_row

    assert messages_of_row(rows["sr:1"]) == rows["sr:1"]["messages"]
    # The categories line is learned like the verdict: it is in the masked labels.
    chat = encode_chat(tokenizer, rows["sr:1"]["messages"])
    learned = [t for t, lab in zip(chat.input_ids, chat.labels) if lab != IGNORE_INDEX]
    assert tokenizer.decode(learned).startswith("Prompt harm: harmful\nResponse harm: None\nSafety categories: S1")
    half = build_sft_rows(items_from_examples(harmful + benign + unmapped), mode="no_think", categories_ratio=0.5)
    assert half.stats["categories"]["rows_asking"] == 5
    assert build_sft_rows(items_from_examples(harmful), mode="no_think").rows[0]["category_codes"] is None


def test_categories_joined_by_prompt_reach_traces_without_their_own(tmp_path):
    from reasonguard.sft.files import category_lookup, join_categories

    lookup = category_lookup([GuardExample("hb:1", "harmbench", "prompt number 0", prompt_harm_label="harmful",
                                           categories=("cybercrime_intrusion",))])
    items, joined = join_categories(items_from_traces([_trace_row(0), _trace_row(1)]), lookup)
    assert joined == 1 and items[0].example.extra["category_codes"] == ["S16"] and "category_codes" not in items[1].example.extra
    rows = {r["id"]: r for r in build_sft_rows(items, mode="think", categories_ratio=1.0).rows}
    assert rows["ex:0"]["messages"][1]["content"].endswith("Response harm: None\nSafety categories: S16")
    assert rows["ex:1"]["category_codes"] is None  # harmful, no categories: not asked


def test_categories_config_needs_the_default_taxonomy():
    with pytest.raises(ConfigError, match="default taxonomy"):
        validate_config(SftDataConfig, {"labelled": [{"dataset": "demo"}], "categories": {"ratio": 0.5},
                                        "policy": ["Weapons"]}, "sft")
