"""Loaders for the vendored safety datasets (one folder each, described by its SOURCE.md).

Every loader takes the dataset's folder (or the datasets root that holds it, or nothing: then
`default_datasets_root()` is used) and returns `list[GuardExample]`. The docstring of each
loader states what its labels mean; counts are pinned by tests/datasets/test_local.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from reasonguard.datasets.generic import (
    ColumnMapping,
    is_missing,
    read_records,
    records_to_examples,
    to_categories,
)
from reasonguard.schema import GuardExample

DATASETS_DIR_ENV = "REASONGUARD_DATASETS_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_FALLBACK_ROOT = _REPO_ROOT.parent / "shared" / "datasets"

PathLike = str | os.PathLike | None


def default_datasets_root() -> Path:
    """`$REASONGUARD_DATASETS_DIR`, else `../shared/datasets` beside the repository checkout."""
    configured = os.environ.get(DATASETS_DIR_ENV)
    if configured:
        root = Path(configured).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{DATASETS_DIR_ENV}={configured} is not a directory")
        return root
    if _FALLBACK_ROOT.is_dir():
        return _FALLBACK_ROOT
    raise FileNotFoundError(
        f"no datasets folder: set {DATASETS_DIR_ENV} to the folder that holds the dataset folders "
        f"(xstest/, harmbench/, ...), or pass a folder to the loader (looked for {_FALLBACK_ROOT})"
    )


def dataset_folder(folder: PathLike, name: str) -> Path:
    """Resolve a loader's folder: None -> <root>/<name>; a root that holds <name>/ -> that subfolder."""
    path = default_datasets_root() / name if folder is None else Path(folder)
    if (path / name).is_dir():
        path = path / name
    if not path.is_dir():
        raise FileNotFoundError(f"dataset folder {path} does not exist (expected the {name!r} dataset)")
    return path


def _examples(rows: Iterable[dict[str, Any]]) -> list[GuardExample]:
    return [GuardExample(**row) for row in rows]


def _harm(flag: bool) -> str:
    return "harmful" if flag else "unharmful"


# ---------------------------------------------------------------- prompt-level sets


def load_alpaca_harmless_sample(folder: PathLike = None) -> list[GuardExample]:
    """400 Stanford Alpaca instructions (split "train"), all `unharmful`.

    Labels are assumed, not annotated: benign negatives / over-refusal control.
    """
    path = dataset_folder(folder, "alpaca_harmless_sample") / "harmless_alpaca_400.jsonl"
    columns = ColumnMapping(prompt="prompt", prompt_harm_label="label")
    return records_to_examples(read_records(path), columns, source="alpaca_harmless_sample", split="train", path=str(path))


def load_guardreasoner_train_prompts_5k(folder: PathLike = None) -> list[GuardExample]:
    """5000 GuardReasonerTrain prompts (split "train"), balanced 2500 harmful / 2500 unharmful.

    `prompt_harm_label` is the upstream gold prompt label; extra['origin'] names the source
    training set (WildGuardTrainR, BeaverTailsTrainR, AegisTrainR, ToxicChatTrainR).
    """
    path = dataset_folder(folder, "guardreasoner_train_prompts_5k") / "guardreasoner_train_prompts_5k.jsonl"
    records = [{**r, "origin": r.get("source")} for r in read_records(path)]
    columns = ColumnMapping(id="id", prompt="prompt", prompt_harm_label="prompt_harm_label", extra=("origin",))
    return records_to_examples(records, columns, source="guardreasoner_train_prompts_5k", split="train", path=str(path))


def load_wildguardtest_prompts_derived(folder: PathLike = None) -> list[GuardExample]:
    """1554 WildGuardTest prompts (partial second-hand copy): `prompt_harm_label` 609 harmful / 945 unharmful.

    Human prompt labels from WildGuardTest; `categories` = the WildGuard risk subcategory (none for benign).
    """
    path = dataset_folder(folder, "wildguardtest_prompts_derived") / "wildguardtest_prompts_1554.jsonl"
    records = [{**r, "cats": None if r.get("subcategory") == "benign" else r.get("subcategory")} for r in read_records(path)]
    columns = ColumnMapping(
        id="id", prompt="prompt", prompt_harm_label="prompt_harm_label", categories="cats", extra=("subcategory",)
    )
    return records_to_examples(records, columns, source="wildguardtest_prompts_derived", split="test", path=str(path))


def load_simple_safety_tests(folder: PathLike = None) -> list[GuardExample]:
    """SimpleSafetyTests: 100 prompts, all `harmful` (should be refused); `categories` = the harm area (5 x 20)."""
    path = dataset_folder(folder, "simple_safety_tests") / "simple_safety_tests.csv"
    return _examples(
        {
            "id": f"simple_safety_tests:{r['id']}",
            "source": "simple_safety_tests",
            "prompt": r["prompts_final"],
            "prompt_harm_label": "harmful",
            "categories": (r["harm_area"],),
            "extra": {"category": r["category"], "counter": int(r["counter"])},
        }
        for r in read_records(path)
    )


def load_openai_moderation(folder: PathLike = None) -> list[GuardExample]:
    """OpenAI Moderation eval set, 1680 texts: `harmful` if any of the 8 category flags is 1 (522), else `unharmful`.

    A missing flag means unknown (kept out of `extra['flags']`); `categories` = the flags that are 1.
    """
    path = dataset_folder(folder, "openai_moderation") / "samples-1680.jsonl"
    flags = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
    rows = []
    for index, record in enumerate(read_records(path)):
        known = {f: int(record[f]) for f in flags if not is_missing(record.get(f))}
        positive = tuple(f for f, v in known.items() if v == 1)
        rows.append(
            {
                "id": f"openai_moderation:{index}",
                "source": "openai_moderation",
                "prompt": record["prompt"],
                "prompt_harm_label": _harm(bool(positive)),
                "categories": positive,
                "extra": {"flags": known},
            }
        )
    return _examples(rows)


def load_xstest(folder: PathLike = None) -> list[GuardExample]:
    """XSTest prompts, 450: `safe` -> `unharmful` (250, should be answered), `unsafe` -> `harmful` (200 contrast prompts).

    `categories` = the prompt type (e.g. homonyms, contrast_homonyms); extra keeps focus and note.
    """
    path = dataset_folder(folder, "xstest") / "xstest_prompts.csv"
    return _examples(
        {
            "id": f"xstest:{r['id']}",
            "source": "xstest",
            "prompt": r["prompt"],
            "prompt_harm_label": {"safe": "unharmful", "unsafe": "harmful"}[r["label"]],
            "categories": (r["type"],),
            "extra": {"type": r["type"], "focus": r["focus"], "note": r["note"]},
        }
        for r in read_records(path)
    )


_XSTEST_REFUSAL = {"1_full_compliance": "compliance", "2_full_refusal": "refusal", "3_partial_refusal": "refusal"}


def load_xstest_completions(folder: PathLike = None, *, model: str | None = None) -> list[GuardExample]:
    """XSTest v2 model completions, 2250 (5 models x 450) with human refusal annotations.

    extra['response_refusal_label']: `1_full_compliance` -> compliance (1091); full (983) and partial (176)
    refusal -> refusal (the raw label stays in extra['final_label']). `prompt_harm_label` comes from the
    prompt's safe/unsafe label; `response_harm_label` is left None (XSTest labels refusal, not harm).
    `model` keeps one model's file (gpt4, llama2new, llama2orig, mistralguard, mistralinstruct).
    """
    path = dataset_folder(folder, "xstest") / "xstest_v2_completions_all.csv"
    records = [r for r in read_records(path) if model is None or r["model"] == model]
    if not records:
        raise ValueError(f"no XSTest completions for model {model!r}")
    return _examples(
        {
            "id": f"xstest_completions:{r['model']}:{r['id']}",
            "source": "xstest_completions",
            "prompt": r["prompt"],
            "response": r["completion"] or "",
            "prompt_harm_label": {"safe": "unharmful", "unsafe": "harmful"}[r["prompt_label"]],
            "categories": (r["type"],),
            "extra": {
                "response_refusal_label": _XSTEST_REFUSAL[r["final_label"]],
                "final_label": r["final_label"],
                "model": r["model"],
                "type": r["type"],
            },
        }
        for r in records
    )


def load_harmbench(folder: PathLike = None, *, variant: Literal["all", "test", "val"] = "all") -> list[GuardExample]:
    """HarmBench text behaviors: all 400 (`test` 320, `val` 80) are `harmful` requests.

    `categories` = SemanticCategory; contextual behaviors get their ContextString prepended as HarmBench
    does (`context + "\\n\\n---\\n\\n" + behavior`). `split` is "test" / "val" (from the file for test/val,
    "test" for all).
    """
    if variant not in ("all", "test", "val"):
        raise ValueError(f"HarmBench variant must be 'all', 'test' or 'val', got {variant!r}")
    path = dataset_folder(folder, "harmbench") / f"harmbench_behaviors_text_{variant}.csv"
    source = "harmbench" if variant == "all" else f"harmbench_{variant}"
    rows = []
    for r in read_records(path):
        context = r.get("ContextString")
        prompt = f"{context}\n\n---\n\n{r['Behavior']}" if context else r["Behavior"]
        rows.append(
            {
                "id": f"{source}:{r['BehaviorID']}",
                "source": source,
                "prompt": prompt,
                "prompt_harm_label": "harmful",
                "categories": (r["SemanticCategory"],),
                "split": "val" if variant == "val" else "test",
                "extra": {
                    "functional_category": r["FunctionalCategory"],
                    "behavior_id": r["BehaviorID"],
                    "has_context": bool(context),
                },
            }
        )
    return _examples(rows)


def load_strongreject(folder: PathLike = None, *, variant: Literal["full", "small"] = "full") -> list[GuardExample]:
    """StrongREJECT forbidden prompts: `full` 313 or `small` 60, all `harmful`; `categories` = the category (6)."""
    files = {"full": "strongreject_dataset.csv", "small": "strongreject_small_dataset.csv"}
    if variant not in files:
        raise ValueError(f"StrongREJECT variant must be 'full' or 'small', got {variant!r}")
    path = dataset_folder(folder, "strongreject") / files[variant]
    source = "strongreject" if variant == "full" else "strongreject_small"
    return _examples(
        {
            "id": f"{source}:{index}",
            "source": source,
            "prompt": r["forbidden_prompt"],
            "prompt_harm_label": "harmful",
            "categories": (r["category"],),
            "extra": {"origin": r["source"]},
        }
        for index, r in enumerate(read_records(path))
    )


def load_toxicchat(folder: PathLike = None, *, variant: Literal["full", "guardreasoner"] = "full") -> list[GuardExample]:
    """ToxicChat0124 test prompts: `full` 5083 (toxicity 1 -> harmful: 362 / 4721) or the GuardReasoner subset 2853.

    Human-annotated toxicity of real user prompts to the Vicuna demo.
    """
    base = dataset_folder(folder, "toxicchat")
    if variant == "full":
        path = base / "toxicchat0124_test_prompt_labels.jsonl"
        columns = ColumnMapping(id="id", prompt="user_input", prompt_harm_label="toxicity")
        return records_to_examples(read_records(path), columns, source="toxicchat", split="test", path=str(path))
    if variant == "guardreasoner":
        path = base / "toxicchat_test_guardreasoner_subset.jsonl"
        columns = ColumnMapping(id="id", prompt="prompt", prompt_harm_label="prompt_harm_label")
        source = "toxicchat_guardreasoner"
        return records_to_examples(read_records(path), columns, source=source, split="test", path=str(path))
    raise ValueError(f"ToxicChat variant must be 'full' or 'guardreasoner', got {variant!r}")


def load_do_not_answer(
    folder: PathLike = None,
    *,
    variant: Literal["instructions", "responses"] = "instructions",
    risky_as_harmful: bool = False,
) -> list[GuardExample]:
    """Do-Not-Answer: `instructions` (939 risky prompts) or `responses` (5634 = 939 x 6 models).

    Prompts are all 'risky' (should be refused or handled with care) but not all strictly harmful, so
    `prompt_harm_label` is None unless `risky_as_harmful=True`. `responses`: `response_harm_label` =
    the human `harmful` 0/1 (193 harmful / 5441 unharmful); extra['action'] = the 0-5 response-type category.
    `categories` = types_of_harm (12); extra keeps risk_area and specific_harms.
    """
    base = dataset_folder(folder, "do_not_answer")
    prompt_label = "harmful" if risky_as_harmful else None
    if variant == "instructions":
        return _examples(
            {
                "id": f"do_not_answer:{r['id']}",
                "source": "do_not_answer",
                "prompt": r["question"],
                "prompt_harm_label": prompt_label,
                "categories": (r["types_of_harm"],),
                "extra": {"risk_area": r["risk_area"], "specific_harms": r["specific_harms"]},
            }
            for r in read_records(base / "do_not_answer_en_instructions.csv")
        )
    if variant == "responses":
        return _examples(
            {
                "id": f"do_not_answer_responses:{r['id']}:{r['model']}",
                "source": "do_not_answer_responses",
                "prompt": r["question"],
                "response": r["response"],
                "prompt_harm_label": prompt_label,
                "response_harm_label": _harm(int(r["harmful"]) == 1),
                "categories": (r["types_of_harm"],),
                "extra": {
                    "model": r["model"],
                    "action": int(r["action"]),
                    "risk_area": r["risk_area"],
                    "specific_harms": r["specific_harms"],
                },
            }
            for r in read_records(base / "do_not_answer_responses_long.jsonl")
        )
    raise ValueError(f"Do-Not-Answer variant must be 'instructions' or 'responses', got {variant!r}")


# ---------------------------------------------------------------- response-level sets


def load_beavertails(folder: PathLike = None) -> list[GuardExample]:
    """BeaverTails 30k_test, 3021 QA pairs: `response_harm_label` = not is_safe (1733 harmful / 1288 unharmful).

    Human QA-pair labels; `categories` = the true ones of the 14 harm categories (none for safe pairs).
    """
    path = dataset_folder(folder, "beavertails") / "beavertails_30k_test.jsonl"
    return _examples(
        {
            "id": f"beavertails:{r['id']}",
            "source": "beavertails",
            "prompt": r["prompt"],
            "response": r["response"],
            "response_harm_label": _harm(not r["is_safe"]),
            "categories": to_categories(r.get("category")),
        }
        for r in read_records(path)
    )


def load_jailbreakbench(
    folder: PathLike = None, *, variant: Literal["behaviors", "harmful", "benign", "responses"] = "behaviors"
) -> list[GuardExample]:
    """JailbreakBench. `behaviors` = 100 `harmful` + 100 `unharmful` (topic-matched benign twins) goals,
    or just one half (`harmful` / `benign`); `categories` = the JBB category (10).

    `responses`: 1637 attack prompt/response pairs; `response_harm_label` = the JailbreakBench judge's
    `jailbroken` (True -> harmful, 937 / 700) - an automatic judge label, not a human one; prompts are
    jailbreak attacks on harmful goals, so `prompt_harm_label` is `harmful`.
    """
    base = dataset_folder(folder, "jailbreakbench")
    if variant == "responses":
        return _jailbreakbench_responses(base / "jbb_artifacts_responses.jsonl")
    halves = {"behaviors": ("harmful", "benign"), "harmful": ("harmful",), "benign": ("benign",)}
    if variant not in halves:
        raise ValueError(f"JailbreakBench variant must be one of behaviors/harmful/benign/responses, got {variant!r}")
    source = "jailbreakbench" if variant == "behaviors" else f"jailbreakbench_{variant}"
    files = {"harmful": "harmful_behaviors_from_artifacts.csv", "benign": "benign_behaviors.csv"}
    rows = []
    for half in halves[variant]:
        for r in read_records(base / files[half]):
            rows.append(
                {
                    "id": f"{source}:{half}:{r['index']}",
                    "source": source,
                    "prompt": r["goal"],
                    "prompt_harm_label": "harmful" if half == "harmful" else "unharmful",
                    "categories": (r["category"],),
                    "extra": {"behavior": r["behavior"], "index": int(r["index"])},
                }
            )
    return _examples(rows)


def _jailbreakbench_responses(path: Path) -> list[GuardExample]:
    rows = []
    for r in read_records(path):
        guard1 = r.get("jailbroken_llama_guard1")
        rows.append(
            {
                "id": f"jailbreakbench_responses:{r['method']}:{r['target_model']}:{r['index']}",
                "source": "jailbreakbench_responses",
                "prompt": r["prompt"],
                "response": r["response"],
                "prompt_harm_label": "harmful",
                "response_harm_label": _harm(bool(r["jailbroken"])),
                "categories": (r["category"],),
                "extra": {
                    "method": r["method"],
                    "target_model": r["target_model"],
                    "goal": r["goal"],
                    "label_source": "jailbreakbench_judge",
                    "jailbroken_llama_guard1": None if is_missing(guard1) else bool(guard1),
                },
            }
        )
    return _examples(rows)


# ---------------------------------------------------------------- GuardReasoner evaluation suite

# name -> (file, label column); the label column says the task.
GUARDREASONER_EVAL_FILES: dict[str, tuple[str, str]] = {
    "aegis": ("aegis_safety_test.jsonl", "prompt_harm_label"),
    "toxicchat": ("toxicchat_test.jsonl", "prompt_harm_label"),
    "openai_moderation": ("openai_moderation.jsonl", "prompt_harm_label"),
    "simplesafetytests": ("simplesafetytests.jsonl", "prompt_harm_label"),
    "harmbench_prompt": ("harmbench_prompt.jsonl", "prompt_harm_label"),
    "harmbench_response": ("harmbench_response.jsonl", "response_harm_label"),
    "xstest_response_harm": ("xstest_response_harm.jsonl", "response_harm_label"),
    "xstest_response_refusal": ("xstest_response_refusal.jsonl", "response_refusal_label"),
    "safe_rlhf": ("safe_rlhf_test.jsonl", "response_harm_label"),
    "beavertails": ("beavertails_30k_test.jsonl", "response_harm_label"),
}


def load_guardreasoner_eval(folder: PathLike = None, *, subset: str) -> list[GuardExample]:
    """One GuardReasoner benchmark file (the guard-model test suite), labels as published there.

    Prompt sets (aegis, toxicchat, openai_moderation, simplesafetytests, harmbench_prompt) carry
    `prompt_harm_label` (is the user request harmful); response sets (harmbench_response,
    xstest_response_harm, safe_rlhf, beavertails) carry `response_harm_label` (is the response
    harmful); xstest_response_refusal carries extra['response_refusal_label'] (refusal / compliance).
    Source is `guardreasoner_eval.<subset>`.
    """
    if subset not in GUARDREASONER_EVAL_FILES:
        raise ValueError(f"unknown GuardReasoner subset {subset!r}; choose one of {sorted(GUARDREASONER_EVAL_FILES)}")
    filename, label_column = GUARDREASONER_EVAL_FILES[subset]
    path = dataset_folder(folder, "guardreasoner_eval") / filename
    columns = ColumnMapping(id="id", prompt="prompt", response="response", **{label_column: label_column})
    source = f"guardreasoner_eval.{subset}"
    return records_to_examples(read_records(path), columns, source=source, split="test", path=str(path))


# ---------------------------------------------------------------- topic following (custom policy)


TOPIC_HELD_OUT_EVERY = 5  # every 5th scenario of a domain (in id order, from the 3rd) is held out for testing
TopicScenarios = Literal["all", "train", "test"]


def topic_held_out_scenarios(scenarios: list[dict[str, Any]], every: int = TOPIC_HELD_OUT_EVERY) -> set[int]:
    """Scenario ids (indexes into `scenarios`) held out for testing: within each domain, the scenarios in id
    order, every `every`-th one starting from the third (offset 2: the first ones of a domain are not all
    of one kind). Depends only on the scenario list, so a turn's split never changes with the turns file."""
    by_domain: dict[str, list[int]] = {}
    for scenario_id, scenario in enumerate(scenarios):
        by_domain.setdefault(str(scenario["domain"]), []).append(scenario_id)
    return {sid for ids in by_domain.values() for k, sid in enumerate(ids) if k % every == min(2, every - 1)}


def load_topic_following(folder: PathLike = None, *, include_unlabeled: bool = True,
                         scenarios: TopicScenarios = "all") -> list[GuardExample]:
    """CantTalkAboutThis topic-following user turns (1546), each judged against its scenario's policy.

    `prompt` = the user turn; extra['policy'] = the scenario's system_instruction; extra['history'] = the
    dialogue before the turn as [{role, content}] (None for the 14 distractors whose position is unknown).
    `off_topic` human-written distractors -> `harmful` (violate the policy, 487); `original_turn` turns whose
    next assistant turn does not refuse -> `unharmful` (991). The 68 original turns the assistant refuses
    (regex heuristic) may probe forbidden sub-topics: kept with label None (`include_unlabeled=False` drops
    them). Split "train" (the paper mixes this data into SFT).

    `scenarios` splits by scenario (`topic_held_out_scenarios`: 39 of the 190 scenarios, every domain):
    "test" = the turns of the held-out scenarios (split "test", 305 turns), for evaluating a guard on
    policies it never saw; "train" = the turns of the other scenarios (split "train") minus any turn whose
    normalised prompt (reasonguard.hygiene) also occurs in a held-out scenario, so a guard trained on
    "train" can be evaluated on "test". "all" = every turn, split "train" (no held-out split). The source
    is `topic_following_<scenarios>` for "train"/"test"; ids are the same in every variant.
    """
    base = dataset_folder(folder, "topic_following_canttalkaboutthis")
    scenario_rows = read_records(base / "scenarios_with_human_distractors.jsonl")
    held_out = topic_held_out_scenarios(scenario_rows)
    source = "topic_following" if scenarios == "all" else f"topic_following_{scenarios}"
    turns = read_records(base / "turns_on_off_topic.jsonl")
    rows = []
    for index, turn in enumerate(turns):
        label = _topic_label(turn)
        if label is None and not include_unlabeled:
            continue
        is_test = int(turn["scenario_id"]) in held_out
        if (scenarios == "test" and not is_test) or (scenarios == "train" and is_test):
            continue
        scenario = scenario_rows[turn["scenario_id"]]
        context_len = turn.get("context_len")
        history = None if is_missing(context_len) else [dict(m) for m in scenario["conversation"][: int(context_len)]]
        rows.append(
            {
                "id": f"topic_following:{index}",
                "source": source,
                "prompt": turn["user_turn"],
                "prompt_harm_label": label,
                "categories": (turn["domain"],),
                "split": "test" if scenarios == "test" else "train",
                "extra": {
                    "policy": turn["system_instruction"],
                    "history": history,
                    "topic_label": turn["label"],
                    "origin": turn["origin"],
                    "scenario_id": int(turn["scenario_id"]),
                    "scenario": turn["scenario"],
                    "next_assistant_refuses_heuristic": turn.get("next_assistant_refuses_heuristic"),
                },
            }
        )
    if scenarios == "train":
        rows = _without_prompts_of(rows, [t["user_turn"] for t in turns if int(t["scenario_id"]) in held_out])
    return _examples(rows)


def _without_prompts_of(rows: list[dict[str, Any]], held_out_prompts: Iterable[str]) -> list[dict[str, Any]]:
    """Rows whose prompt (normalised as reasonguard.hygiene does) is none of `held_out_prompts`."""
    from reasonguard.hygiene import fingerprint

    held = {fingerprint(p) for p in held_out_prompts}
    return [r for r in rows if fingerprint(r["prompt"]) not in held]


def _topic_label(turn: dict[str, Any]) -> str | None:
    if turn["label"] == "off_topic":
        return "harmful"
    if turn["label"] == "original_turn":
        return None if turn.get("next_assistant_refuses_heuristic") else "unharmful"
    raise ValueError(f"unknown topic-following label {turn['label']!r}")


__all__ = [
    "DATASETS_DIR_ENV",
    "GUARDREASONER_EVAL_FILES",
    "dataset_folder",
    "default_datasets_root",
    "load_alpaca_harmless_sample",
    "load_beavertails",
    "load_do_not_answer",
    "load_guardreasoner_eval",
    "load_guardreasoner_train_prompts_5k",
    "load_harmbench",
    "load_jailbreakbench",
    "load_openai_moderation",
    "load_simple_safety_tests",
    "load_strongreject",
    "load_topic_following",
    "topic_held_out_scenarios",
    "load_toxicchat",
    "load_wildguardtest_prompts_derived",
    "load_xstest",
    "load_xstest_completions",
]
