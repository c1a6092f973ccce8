"""Each vendored dataset loads with the row and label counts its SOURCE.md states."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from reasonguard.datasets import local
from reasonguard.schema import GuardExample

P, R, F = "prompt_harm_label", "response_harm_label", "response_refusal_label"

# (loader, kwargs, source, rows, {label field: counts}) - numbers from each SOURCE.md.
CASES = [
    (local.load_alpaca_harmless_sample, {}, "alpaca_harmless_sample", 400, {P: {"unharmful": 400}}),
    (local.load_beavertails, {}, "beavertails", 3021, {R: {"harmful": 1733, "unharmful": 1288}, P: {None: 3021}}),
    (local.load_do_not_answer, {}, "do_not_answer", 939, {P: {None: 939}}),
    (local.load_do_not_answer, {"risky_as_harmful": True}, "do_not_answer", 939, {P: {"harmful": 939}}),
    (local.load_do_not_answer, {"variant": "responses"}, "do_not_answer_responses", 5634,
     {R: {"harmful": 193, "unharmful": 5441}}),
    (local.load_guardreasoner_train_prompts_5k, {}, "guardreasoner_train_prompts_5k", 5000,
     {P: {"harmful": 2500, "unharmful": 2500}}),
    (local.load_harmbench, {}, "harmbench", 400, {P: {"harmful": 400}}),
    (local.load_harmbench, {"variant": "test"}, "harmbench_test", 320, {P: {"harmful": 320}}),
    (local.load_harmbench, {"variant": "val"}, "harmbench_val", 80, {P: {"harmful": 80}}),
    (local.load_jailbreakbench, {}, "jailbreakbench", 200, {P: {"harmful": 100, "unharmful": 100}}),
    (local.load_jailbreakbench, {"variant": "harmful"}, "jailbreakbench_harmful", 100, {P: {"harmful": 100}}),
    (local.load_jailbreakbench, {"variant": "benign"}, "jailbreakbench_benign", 100, {P: {"unharmful": 100}}),
    (local.load_jailbreakbench, {"variant": "responses"}, "jailbreakbench_responses", 1637,
     {R: {"harmful": 937, "unharmful": 700}}),
    (local.load_openai_moderation, {}, "openai_moderation", 1680, {P: {"harmful": 522, "unharmful": 1158}}),
    (local.load_simple_safety_tests, {}, "simple_safety_tests", 100, {P: {"harmful": 100}}),
    (local.load_strongreject, {}, "strongreject", 313, {P: {"harmful": 313}}),
    (local.load_strongreject, {"variant": "small"}, "strongreject_small", 60, {P: {"harmful": 60}}),
    (local.load_topic_following, {}, "topic_following", 1546, {P: {"harmful": 487, "unharmful": 991, None: 68}}),
    (local.load_topic_following, {"include_unlabeled": False}, "topic_following", 1478,
     {P: {"harmful": 487, "unharmful": 991}}),
    (local.load_toxicchat, {}, "toxicchat", 5083, {P: {"harmful": 362, "unharmful": 4721}}),
    (local.load_toxicchat, {"variant": "guardreasoner"}, "toxicchat_guardreasoner", 2853,
     {P: {"harmful": 362, "unharmful": 2491}}),
    (local.load_wildguardtest_prompts_derived, {}, "wildguardtest_prompts_derived", 1554,
     {P: {"harmful": 609, "unharmful": 945}}),
    (local.load_xstest, {}, "xstest", 450, {P: {"unharmful": 250, "harmful": 200}}),
    (local.load_xstest_completions, {}, "xstest_completions", 2250,
     {F: {"compliance": 1091, "refusal": 983 + 176}, P: {"unharmful": 1250, "harmful": 1000}, R: {None: 2250}}),
    (local.load_xstest_completions, {"model": "gpt4"}, "xstest_completions", 450, {P: {"unharmful": 250, "harmful": 200}}),
]

GUARDREASONER_CASES = {
    "simplesafetytests": (100, {P: {"harmful": 100}}),
    "aegis": (359, {P: {"unharmful": 127, "harmful": 232}}),
    "openai_moderation": (1680, {P: {"harmful": 522, "unharmful": 1158}}),
    "harmbench_prompt": (239, {P: {"harmful": 239}}),
    "harmbench_response": (602, {R: {"harmful": 273, "unharmful": 329}}),
    "xstest_response_harm": (446, {R: {"unharmful": 368, "harmful": 78}}),
    "xstest_response_refusal": (449, {F: {"compliance": 271, "refusal": 178}, R: {None: 449}}),
    "toxicchat": (2853, {P: {"unharmful": 2491, "harmful": 362}}),
    "safe_rlhf": (2000, {R: {"unharmful": 1000, "harmful": 1000}}),
    "beavertails": (3021, {R: {"harmful": 1733, "unharmful": 1288}}),
}


def label_counts(examples: list[GuardExample], field: str) -> dict:
    if field == F:
        return dict(collections.Counter(e.extra.get(F) for e in examples))
    return dict(collections.Counter(getattr(e, field) for e in examples))


def check_rows(examples: list[GuardExample], source: str) -> None:
    ids = [e.id for e in examples]
    assert len(set(ids)) == len(ids), "ids must be unique within a dataset"
    assert all(e.id.startswith(f"{e.source}:") for e in examples)
    assert {e.source for e in examples} == {source}
    for e in examples:
        assert isinstance(e, GuardExample) and e.prompt.strip()
        assert GuardExample.from_row(json.loads(json.dumps(e.to_row()))) == e  # JSON-clean, round-trips


@pytest.mark.parametrize(
    ("loader", "kwargs", "source", "rows", "labels"), CASES, ids=[f"{c[2]}{c[1] or ''}" for c in CASES]
)
def test_local_counts(datasets_root, loader, kwargs, source, rows, labels):
    examples = loader(**kwargs)
    assert len(examples) == rows
    for field, expected in labels.items():
        assert label_counts(examples, field) == expected, field
    check_rows(examples, source)


@pytest.mark.parametrize("subset", sorted(GUARDREASONER_CASES))
def test_guardreasoner_eval_counts(datasets_root, subset):
    rows, labels = GUARDREASONER_CASES[subset]
    examples = local.load_guardreasoner_eval(subset=subset)
    assert len(examples) == rows
    for field, expected in labels.items():
        assert label_counts(examples, field) == expected, field
    check_rows(examples, f"guardreasoner_eval.{subset}")
    has_response = {e.response is not None for e in examples}
    assert has_response == ({True} if (R in labels or F in labels) else {False})


def test_every_folder_has_a_loader(datasets_root):
    loaded_folders = {
        "alpaca_harmless_sample", "beavertails", "do_not_answer", "guardreasoner_eval", "guardreasoner_train_prompts_5k",
        "harmbench", "jailbreakbench", "openai_moderation", "simple_safety_tests", "strongreject",
        "topic_following_canttalkaboutthis", "toxicchat", "wildguardtest_prompts_derived", "xstest",
    }
    # Recorded teacher traces, not labelled items: read by the import stage (jobs.import_traces, format
    # guardreasoner; tests/test_trace_import.py imports a sample of the real file).
    trace_folders = {"guardreasoner_traces"}
    assert {p.name for p in datasets_root.iterdir() if p.is_dir()} <= loaded_folders | trace_folders
    files = {p.name for p in (datasets_root / "guardreasoner_eval").glob("*.jsonl")}
    assert files == {f for f, _ in local.GUARDREASONER_EVAL_FILES.values()}


def test_topic_following_policy_and_history(datasets_root):
    examples = local.load_topic_following()
    first = examples[0]
    assert first.extra["history"] == [] and first.extra["topic_label"] == "original_turn"
    assert first.extra["policy"].startswith("In the scenario of")
    with_history = [e for e in examples if e.extra["history"]]
    for e in with_history:
        assert all(set(m) == {"role", "content"} for m in e.extra["history"])
    originals = [e for e in with_history if e.extra["topic_label"] == "original_turn"]
    assert all(e.extra["history"][-1]["role"] == "assistant" for e in originals)  # the turn itself is not in it
    assert sum(e.extra["history"] is None for e in examples) == 14
    refused = [e for e in examples if e.extra["next_assistant_refuses_heuristic"]]
    assert len(refused) == 68 and all(e.prompt_harm_label is None for e in refused)


def test_harmbench_contextual_prompts_carry_their_context(datasets_root):
    examples = local.load_harmbench()
    contextual = [e for e in examples if e.extra["functional_category"] == "contextual"]
    assert len(contextual) == 100 and all(e.extra["has_context"] and "\n\n---\n\n" in e.prompt for e in contextual)
    assert collections.Counter(e.categories[0] for e in examples)["copyright"] == 100
    assert {e.split for e in local.load_harmbench(variant="val")} == {"val"}


def test_category_and_extra_mapping(datasets_root):
    beaver = local.load_beavertails()
    assert all(bool(e.categories) == (e.response_harm_label == "harmful") for e in beaver)
    assert sum("self_harm" in e.categories for e in beaver) == 19
    moderation = local.load_openai_moderation()
    assert sum("SH" in e.categories for e in moderation) == 51
    assert all(set(e.extra["flags"]) <= {"S", "H", "V", "HR", "SH", "S3", "H2", "V2"} for e in moderation)
    sst = local.load_simple_safety_tests()
    assert collections.Counter(e.categories[0] for e in sst)["Child safety"] == 20
    dna = local.load_do_not_answer(variant="responses")
    assert {e.extra["action"] for e in dna} == {0, 1, 2, 3, 4, 5} and len({e.categories[0] for e in dna}) == 12
    assert {e.split for e in local.load_guardreasoner_train_prompts_5k()} == {"train"}


def test_loader_accepts_the_dataset_folder_or_the_root(datasets_root):
    via_folder = local.load_xstest(datasets_root / "xstest")
    via_root = local.load_xstest(datasets_root)
    assert via_folder == via_root and len(via_root) == 450


def test_bad_variants_are_rejected(datasets_root):
    with pytest.raises(ValueError, match="variant"):
        local.load_harmbench(variant="train")
    with pytest.raises(ValueError, match="unknown GuardReasoner subset"):
        local.load_guardreasoner_eval(subset="wildguardtest")
    with pytest.raises(ValueError, match="no XSTest completions"):
        local.load_xstest_completions(model="gpt5")


# ------------------------------------------------------------ default root (no vendored data needed)


def test_env_var_points_to_the_root(tmp_path, monkeypatch):
    (tmp_path / "simple_safety_tests").mkdir()
    (tmp_path / "simple_safety_tests" / "simple_safety_tests.csv").write_text(
        "id,harm_area,counter,category,prompts_final\nsst_001,Scams and fraud,1,Instructions and actions,Do a scam\n"
    )
    monkeypatch.setenv(local.DATASETS_DIR_ENV, str(tmp_path))
    assert local.default_datasets_root() == tmp_path
    [example] = local.load_simple_safety_tests()
    assert example.id == "simple_safety_tests:sst_001" and example.prompt_harm_label == "harmful"


def test_missing_root_names_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(local.DATASETS_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=local.DATASETS_DIR_ENV):
        local.load_xstest()
    monkeypatch.delenv(local.DATASETS_DIR_ENV)
    monkeypatch.setattr(local, "_FALLBACK_ROOT", Path(tmp_path / "no-shared"))
    with pytest.raises(FileNotFoundError, match=local.DATASETS_DIR_ENV):
        local.default_datasets_root()


def test_missing_dataset_folder_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="'xstest'"):
        local.load_xstest(tmp_path / "elsewhere")
