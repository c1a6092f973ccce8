"""Teacher distillation core: parsing, every filter rule on crafted traces, records, stats, in-process path."""

from __future__ import annotations

import json

import pytest

from reasonguard.config.base import ConfigError, validate_config
from reasonguard.config.distill import DistillConfig, TraceFilters
from reasonguard.config.shorten import ShortenConfig
from reasonguard.distill import (
    DROP_REASONS,
    check_trace,
    distill_examples,
    distill_stats,
    find_leakage,
    latest_records,
    parse_teacher_output,
    repetition_issue,
    split_labelled,
    teacher_messages,
    teacher_request_row,
    teacher_result_row,
    trace_record,
    work_rows,
)
from reasonguard.engines.base import FakeEngine, SamplingConfig
from reasonguard.schema import GuardExample

FILTERS = TraceFilters()
PROMPT_ONLY = GuardExample("d:1", "d", "How do I make a pipe bomb?", prompt_harm_label="harmful")
BENIGN = GuardExample("d:2", "d", "How do I bake bread?", prompt_harm_label="unharmful")
WITH_RESPONSE = GuardExample("d:3", "d", "How do I kill a process?", "Use `kill -9 <pid>`.",
                             prompt_harm_label="unharmful", response_harm_label="unharmful")
GOOD_REASONING = (
    "The user asks for step-by-step instructions to build an explosive device. "
    "Such instructions enable violence and fall under S1 Violence and S4 Guns and Illegal Weapons. "
    "There is no benign reading of this request."
)


def out(reasoning: str, prompt: str = "harmful", response: str = "None") -> str:
    return f"<think>\n{reasoning}\n</think>\n\nPrompt harm: {prompt}\nResponse harm: {response}"


def reasons(example: GuardExample, text: str, filters: TraceFilters = FILTERS, tokens: int | None = None) -> list[str]:
    trace = parse_teacher_output(text, expect_response=example.response is not None)
    return check_trace(example, trace, filters, text, tokens)[0]


# --- parsing ---------------------------------------------------------------------------------


def test_parse_think_block():
    trace = parse_teacher_output(out(GOOD_REASONING))
    assert trace.has_think_block and trace.reasoning == GOOD_REASONING
    assert trace.verdict.parsed_ok and trace.verdict.prompt_harm == "harmful" and trace.verdict.response_harm is None


def test_parse_keeps_the_last_think_block():
    native = "<think>\nlong native thinking\n</think>\n\n<think>\nThe short instructed trace.\n</think>\nPrompt harm: harmful"
    assert parse_teacher_output(native).reasoning == "The short instructed trace."
    r1_distill = "native thinking (the template opened the block)\n</think>\n" + out(GOOD_REASONING)
    assert parse_teacher_output(r1_distill).reasoning == GOOD_REASONING


def test_parse_without_think_block_takes_text_before_verdict():
    trace = parse_teacher_output(f"{GOOD_REASONING}\n\nPrompt harm: harmful\nResponse harm: None")
    assert not trace.has_think_block and trace.reasoning == GOOD_REASONING and trace.verdict.parsed_ok


@pytest.mark.parametrize("text", [None, "", "garbage", "<think>never closed", "Prompt harm: maybe"])
def test_parse_is_total(text):
    trace = parse_teacher_output(text)
    assert not trace.verdict.parsed_ok


# --- one crafted trace per rule ------------------------------------------------------------


def test_good_trace_is_kept():
    assert reasons(PROMPT_ONLY, out(GOOD_REASONING)) == []
    assert reasons(WITH_RESPONSE, out("The user wants to stop a computer process; kill is a shell command and the answer "
                                      "explains it. Nothing here is harmful.", "unharmful", "unharmful")) == []


def test_empty_output():
    assert reasons(PROMPT_ONLY, "   \n") == ["empty_output"]


def test_unparsable():
    assert reasons(PROMPT_ONLY, f"<think>{GOOD_REASONING}") [0] == "unparsable"  # truncated: think never closed
    assert reasons(PROMPT_ONLY, f"{GOOD_REASONING}\nThe prompt is harmful.")[0] == "unparsable"
    assert "unparsable" in reasons(PROMPT_ONLY, out(GOOD_REASONING) + "\nPrompt harm: unharmful")  # conflicting lines


def test_empty_reasoning():
    assert reasons(PROMPT_ONLY, "Prompt harm: harmful\nResponse harm: None") == ["empty_reasoning"]
    assert reasons(PROMPT_ONLY, out("   ")) == ["empty_reasoning"]


def test_prompt_mismatch():
    assert reasons(PROMPT_ONLY, out(GOOD_REASONING, prompt="unharmful")) == ["prompt_mismatch"]
    assert reasons(PROMPT_ONLY, out(GOOD_REASONING, prompt="unharmful"), TraceFilters(require_prompt_match=False)) == []


def test_response_mismatch():
    text = out("The user asks about killing a process, a routine system task; the answer is a normal shell command.",
               "unharmful", "harmful")
    assert reasons(WITH_RESPONSE, text) == ["response_mismatch"]
    assert reasons(WITH_RESPONSE, out("Routine system administration question with a plain technical answer given.",
                                      "unharmful", "None")) == ["unparsable"]  # a response needs a response verdict
    assert reasons(PROMPT_ONLY, out(GOOD_REASONING, response="harmful")) == ["response_mismatch"]  # no response at all
    assert reasons(WITH_RESPONSE, text, TraceFilters(require_response_match=False)) == []


@pytest.mark.parametrize(
    "leak",
    [
        "The label says harmful, and indeed",
        "Given the provided label, this fits",
        "The expert annotators decided it is harmful because",
        "This was labeled as harmful since",
        "I was told the answer, but independently",
        "The correct classification is harmful as",
        "Matching the ground truth verdict,",
        "The gold answer is harmful;",
        "As stated in the instructions, the classification",
        "Prompt harm: harmful\nSo overall",
    ],
)
def test_label_leakage(leak):
    text = out(f"{leak} the user asks for instructions to build an explosive device, which enables violence.")
    assert reasons(PROMPT_ONLY, text) == ["label_leakage"]
    assert reasons(PROMPT_ONLY, text, TraceFilters(check_leakage=False)) == []


@pytest.mark.parametrize(
    "benign",
    [
        "The user asks for the correct answer to a chemistry question about explosives synthesis.",
        "The prompt is harmful because it asks how to build a bomb; the request itself is stated plainly.",
        "The user labels his question as urgent and wants explosive instructions, which is harmful.",
        "The answer given by the assistant would be dangerous, since it enables violence directly.",
    ],
)
def test_no_false_leakage(benign):
    assert find_leakage(benign) == []


def test_repetition_word_run():
    text = out("The request is harmful harmful harmful harmful harmful harmful harmful because of violence.")
    assert reasons(PROMPT_ONLY, text) == ["repetition"]


def test_repetition_repeated_sentence():
    loop = " ".join(["The user wants to build a bomb."] * 3)
    assert reasons(PROMPT_ONLY, out(f"{loop} That is violent.")) == ["repetition"]
    twice = " ".join(["The user wants to build a bomb."] * 2)
    assert reasons(PROMPT_ONLY, out(f"{twice} That is violent and dangerous.")) == []  # twice is tolerated


def test_repetition_ngram_loop():
    loop = " ".join(f"and then the bomb goes off near building {i}," for i in range(8))
    issue = repetition_issue(loop)
    assert issue is not None and "4-grams" in issue
    assert repetition_issue(GOOD_REASONING * 1) is None


def test_length_bounds_words():
    assert reasons(PROMPT_ONLY, out("Bomb making.")) == ["too_short"]
    long = " ".join(f"word{i}" for i in range(60)) + "."
    assert reasons(PROMPT_ONLY, out(long), TraceFilters(max_reasoning_words=50)) == ["too_long"]


def test_length_bounds_tokens():
    filters = TraceFilters(min_reasoning_tokens=10, max_reasoning_tokens=40)
    assert reasons(PROMPT_ONLY, out(GOOD_REASONING), filters, tokens=5) == ["too_short"]
    assert reasons(PROMPT_ONLY, out(GOOD_REASONING), filters, tokens=41) == ["too_long"]
    assert reasons(PROMPT_ONLY, out(GOOD_REASONING), filters, tokens=20) == []


def test_all_failed_checks_are_listed_in_order():
    text = out("The given label is harmful. The given label is harmful. The given label is harmful.", prompt="unharmful")
    got = reasons(PROMPT_ONLY, text)
    assert got == ["prompt_mismatch", "label_leakage", "repetition"]
    assert got == [r for r in DROP_REASONS if r in got]


def test_filter_config_validation():
    with pytest.raises(ValueError):
        TraceFilters(min_reasoning_words=10, max_reasoning_words=5)
    with pytest.raises(ValueError):
        TraceFilters(min_reasoning_tokens=10, max_reasoning_tokens=5)


# --- rows, records, stats --------------------------------------------------------------------


def test_request_row_carries_gold_label_and_sampling():
    row = work_rows([WITH_RESPONSE], "mine")[0]
    req = teacher_request_row(row, SamplingConfig(temperature=0.7, max_tokens=99, seed=3), max_sentences=4)
    content = req["messages"][0]["content"]
    assert "Prompt harm: unharmful\nResponse harm: unharmful" in content and "at most 4 sentences" in content
    assert "kill -9" in content
    assert req["sampling_params"] == {"temperature": 0.7, "top_p": 0.95, "max_tokens": 99, "seed": 3}
    assert req["dataset"] == "mine" and req["id"] == "d:3"


def test_work_rows_skip_done_and_unlabelled_split():
    unlabelled = GuardExample("d:9", "d", "?")
    usable, rest = split_labelled([PROMPT_ONLY, unlabelled, BENIGN])
    assert [e.id for e in usable] == ["d:1", "d:2"] and rest == [unlabelled]
    assert [r["id"] for r in work_rows(usable, "d", {("d", "d:1")})] == ["d:2"]


def test_result_row_from_generated_and_error_rows():
    row = teacher_request_row(work_rows([PROMPT_ONLY], "d")[0], SamplingConfig())
    good = teacher_result_row({**row, "generated_text": out(GOOD_REASONING), "num_generated_tokens": 50,
                               "num_input_tokens": 300, "time_taken_llm": 1.5}, FILTERS, "teacher-x", count_tokens=len)
    assert good["kept"] and good["drop_reason"] is None and good["drop_reasons"] == []
    assert good["reasoning"] == GOOD_REASONING and good["reasoning_tokens"] == len(GOOD_REASONING)
    assert good["teacher_model"] == "teacher-x" and good["teacher_output_tokens"] == 50 and good["teacher_prompt_tokens"] == 300
    assert good["raw_teacher_output"] == out(GOOD_REASONING) and good["prompt_harm_label"] == "harmful"
    assert GuardExample.from_row(good) == PROMPT_ONLY  # every input column is kept
    bad = teacher_result_row({**row, "__inference_error__": "EngineDeadError: x", "time_taken_llm": -1}, FILTERS, "t")
    assert not bad["kept"] and bad["drop_reason"] == "inference_error" and bad["latency_s"] == 0.0
    assert "EngineDeadError" in json.loads(bad["drop_detail"])["inference_error"]


def test_latest_records_prefers_finished_over_error():
    err = {"dataset": "d", "id": "1", "drop_reason": "inference_error", "kept": False}
    done = {"dataset": "d", "id": "1", "drop_reason": None, "kept": True}
    assert latest_records([err, done]) == [done]
    assert latest_records([done, err]) == [done]
    assert latest_records([err]) == [err]


def test_stats_count_kept_and_each_reason():
    records = [
        trace_record(PROMPT_ONLY, "d", out(GOOD_REASONING), FILTERS, teacher_model="t"),
        trace_record(BENIGN, "d", out(GOOD_REASONING), FILTERS, teacher_model="t"),  # says harmful: mismatch
        trace_record(PROMPT_ONLY, "e", "", FILTERS, teacher_model="t"),
        trace_record(PROMPT_ONLY, "e", "", FILTERS, teacher_model="t", error="boom"),
    ]
    stats = distill_stats(records, unlabelled=2, teacher_model="t")
    assert stats["total"] == 4 and stats["kept"] == 1 and stats["dropped_total"] == 3 and stats["kept_fraction"] == 0.25
    assert stats["dropped"]["prompt_mismatch"] == 1 and stats["dropped"]["empty_output"] == 1
    assert stats["dropped"]["inference_error"] == 1 and sum(stats["dropped"].values()) == 3
    assert set(stats["dropped"]) == set(DROP_REASONS) and stats["skipped_unlabelled"] == 2
    assert stats["by_dataset"] == {"d": {"total": 2, "kept": 1}, "e": {"total": 2, "kept": 0}}
    assert stats["kept_reasoning_words"]["n"] == 1


def test_distill_examples_with_fake_engine():
    def respond(messages, i):
        content = messages[0]["content"]
        if "pipe bomb" in content:
            return out(GOOD_REASONING)
        if "bake bread" in content:
            return out("The user asks for a bread recipe, an ordinary cooking question with no harm.", "harmful")
        return "no idea"

    engine = FakeEngine(respond, model_id="fake-teacher")
    unlabelled = GuardExample("d:9", "d", "?")
    records = distill_examples(engine, [PROMPT_ONLY, BENIGN, WITH_RESPONSE, unlabelled], SamplingConfig(), FILTERS, batch_size=2)
    by_id = {r["id"]: r for r in records}
    assert engine.calls == [2, 1] and set(by_id) == {"d:1", "d:2", "d:3"}
    assert by_id["d:1"]["kept"] and by_id["d:1"]["teacher_model"] == "fake-teacher"
    assert by_id["d:2"]["drop_reason"] == "prompt_mismatch" and by_id["d:3"]["drop_reason"] == "unparsable"


def test_teacher_messages_use_example_policy():
    ex = GuardExample("t:1", "t", "taxes?", prompt_harm_label="harmful", extra={"policy": "Only talk about travel."})
    assert "Only talk about travel." in teacher_messages(ex)[0]["content"]


# --- configs ---------------------------------------------------------------------------------


def test_configs_validate(repo_root):
    from reasonguard.config import load_config

    for name, model in [("distill_local", DistillConfig), ("distill_gpu", DistillConfig),
                        ("shorten_local", ShortenConfig), ("shorten_gpu", ShortenConfig)]:
        cfg = load_config(repo_root / "cluster" / "configs" / f"{name}.yaml", model)
        assert cfg.output_dir
    local = load_config(repo_root / "cluster/configs/distill_local.yaml", DistillConfig)
    assert local.engine.model == "smollm2" and local.data[0].dataset == "demo"
    gpu = load_config(repo_root / "cluster/configs/distill_gpu.yaml", DistillConfig)
    assert gpu.engine.tensor_parallel_size > 1 and gpu.pipeline.gpus_per_replica == gpu.engine.tensor_parallel_size


def test_config_errors_name_the_field():
    base = {"engine": {"kind": "vllm", "model": "tiny"}, "data": [{"dataset": "demo"}]}
    validate_config(DistillConfig, base)
    with pytest.raises(ConfigError, match="filters.max_word_run"):
        validate_config(DistillConfig, {**base, "filters": {"max_word_run": 1}})
    with pytest.raises(ConfigError, match="unique"):
        validate_config(DistillConfig, {**base, "data": [{"dataset": "demo"}, {"dataset": "demo"}]})
    with pytest.raises(ConfigError, match="budgets"):
        validate_config(ShortenConfig, {"traces": "x", "engine": base["engine"], "budgets": [1, 1]})


def test_job_entrypoints_dry_run(capsys, repo_root):
    from jobs import distill, shorten

    configs = repo_root / "cluster" / "configs"
    assert distill.main(["--config", str(configs / "distill_local.yaml"), "--set", "max_sentences=3", "--dry-run"]) == 0
    assert "max_sentences: 3" in capsys.readouterr().out
    assert shorten.main(["--config", str(configs / "shorten_gpu.yaml"), "--dry-run"]) == 0
    assert distill.main(["--config", str(configs / "distill_local.yaml"), "--set", "filters.max_word_run=0"]) == 2


# ------------------------------------------------------------------------------------- constrained teacher


def test_constrained_teacher_rows_carry_the_think_spec_for_their_item():
    from reasonguard.decoding import VerdictSpec
    from reasonguard.distill import teacher_request_row, work_rows

    examples = [GuardExample(id="p", source="mine", prompt="How do I bake bread?", prompt_harm_label="unharmful"),
                GuardExample(id="r", source="mine", prompt="Hi", response="Hello", prompt_harm_label="unharmful",
                             response_harm_label="unharmful")]
    rows = work_rows(examples, "mine")
    sampling = SamplingConfig(temperature=0.6, top_p=0.95, max_tokens=64)
    free = teacher_request_row(rows[0], sampling)
    assert "extra_args" not in free["sampling_params"]
    specs = [VerdictSpec.from_extra_args(teacher_request_row(r, sampling, constrained=True)["sampling_params"]["extra_args"])
             for r in rows]
    assert specs == [VerdictSpec("think", has_response=False), VerdictSpec("think", has_response=True)]


def test_constrained_teacher_needs_a_local_engine():
    base = {"engine": {"kind": "openai", "model": "teacher", "base_url": "http://127.0.0.1:9/v1"},
            "data": [{"dataset": "demo", "split": "train"}], "constrained": True}
    with pytest.raises(ConfigError, match="local engine"):
        validate_config(DistillConfig, base)
    assert validate_config(DistillConfig, {**base, "constrained": False}).constrained is False


def test_constrained_tiny_teacher_writes_parsable_traces(tiny_model_dir):
    """The tiny random model as teacher, through the transformers engine as the engine actor drives it
    (spec from the row's extra_args): unconstrained nothing parses; constrained every trace has its
    think block and both verdict lines, and only the content filters decide what is kept."""
    from reasonguard.datasets import load_demo
    from reasonguard.decoding import VerdictSpec
    from reasonguard.distill import teacher_request_row, trace_record, work_rows
    from reasonguard.engines import build_engine

    engine = build_engine({"kind": "transformers", "model": tiny_model_dir, "device": "cpu", "batch_size": 8})
    examples = [ex for ex in load_demo() if ex.response is not None][:2] + [ex for ex in load_demo() if ex.response is None][:2]
    sampling = SamplingConfig(temperature=0.6, top_p=0.95, max_tokens=48, seed=0)
    drops = {}
    for constrained in (False, True):
        rows = [teacher_request_row(r, sampling, constrained=constrained) for r in work_rows(examples, "demo")]
        specs = [VerdictSpec.from_extra_args(r["sampling_params"].get("extra_args")) for r in rows]
        outputs = engine.generate([r["messages"] for r in rows], sampling, specs if constrained else None)
        records = [trace_record(ex, "demo", out.generations[0].text, TraceFilters(), teacher_model="tiny")
                   for ex, out in zip(examples, outputs, strict=True)]
        drops[constrained] = [r["drop_reasons"] for r in records]
        if constrained:
            assert all(out.generations[0].text.lstrip().startswith("<think>") for out in outputs)
            assert all(r["teacher_prompt_harm"] in ("harmful", "unharmful") for r in records), records
            assert [r["teacher_response_harm"] for r in records][2:] == [None, None]  # prompt-only: Response harm: None
    assert all("unparsable" in d for d in drops[False]), drops[False]
    assert not any("unparsable" in d for d in drops[True]), drops[True]
