"""Hugging Face hub loaders: WildGuardMix, Aegis 2.0, ToxicChat, BeaverTails, Nemotron safety reasoning.

Each downloads the dataset's own data file with `huggingface_hub` (imported on call; cached in the
usual HF cache, so a second call works offline) and maps its rows to `GuardExample`. When the hub
cannot be used (package missing, HF_HUB_OFFLINE=1 without a cached copy, no network, a gated
dataset without a token) a `DatasetUnavailableError` says what failed; the fallback is to fetch
the file yourself and call `load_table` on it. File paths and column names follow each dataset
card (WildGuardMix and Aegis 2.0 are gated: accept their terms on the hub and set HF_TOKEN).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reasonguard.datasets.generic import is_missing, read_records, to_categories
from reasonguard.schema import GuardExample

_OFFLINE_VALUES = {"1", "true", "yes", "on"}


class DatasetUnavailableError(RuntimeError):
    """A hub dataset could not be fetched; the message says why and how to load a local copy instead."""


def _hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _OFFLINE_VALUES for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def download_hub_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | None = None,
) -> Path:
    """Local path of one file of a hub dataset repo; `DatasetUnavailableError` when it cannot be had."""
    fallback = (
        f"To use a local copy instead, download {filename!r} from https://huggingface.co/datasets/{repo_id} "
        f"and call reasonguard.datasets.load_table(path, ColumnMapping(...))."
    )
    try:
        from huggingface_hub import hf_hub_download  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise DatasetUnavailableError(f"huggingface_hub is not installed ({exc}). {fallback}") from exc
    offline = _hub_offline()
    try:
        local = hf_hub_download(
            repo_id,
            filename,
            repo_type="dataset",
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            token=token,
            local_files_only=offline,
        )
    except Exception as exc:  # network errors, gated repos, offline mode without a cached file
        why = "offline mode (HF_HUB_OFFLINE) is set and the file is not in the local cache" if offline else str(exc)
        raise DatasetUnavailableError(
            f"could not fetch {filename!r} from the Hugging Face dataset {repo_id}: {type(exc).__name__}: {why}. "
            f"{fallback}"
        ) from exc
    return Path(local)


def _load(
    repo_id: str,
    filename: str,
    to_example: Callable[[dict[str, Any], int], GuardExample | None],
    **download: Any,
) -> list[GuardExample]:
    path = download_hub_file(repo_id, filename, **download)
    examples = [to_example(record, index) for index, record in enumerate(read_records(path))]
    return [e for e in examples if e is not None]


def _harm(value: Any, *, unsafe: str = "unsafe", safe: str = "safe") -> str | None:
    """Map a dataset's own two label strings to harmful / unharmful (None when missing)."""
    if is_missing(value):
        return None
    text = str(value).strip().lower()
    if text in (unsafe, "harmful"):
        return "harmful"
    if text in (safe, "unharmful"):
        return "unharmful"
    raise ValueError(f"unexpected label value {value!r}")


# ---------------------------------------------------------------- WildGuardMix

WILDGUARDMIX_REPO = "allenai/wildguardmix"
WILDGUARDMIX_FILES = {"wildguardtrain": "train/wildguard_train.parquet", "wildguardtest": "test/wildguard_test.parquet"}


def wildguardmix_example(record: dict[str, Any], index: int, *, subset: str) -> GuardExample:
    """One WildGuardMix row: harm labels are harmful/unharmful/None (None = no annotator agreement)."""
    source = f"hf_wildguardmix_{subset.removeprefix('wildguard')}"
    refusal = record.get("response_refusal_label")
    extra = {k: record.get(k) for k in ("adversarial", "subcategory") if k in record}
    extra.update({k: record[k] for k in record if k.endswith("_agreement") and not is_missing(record[k])})
    if not is_missing(refusal):
        extra["response_refusal_label"] = str(refusal)
    response = record.get("response")
    subcategory = record.get("subcategory")
    return GuardExample(
        id=f"{source}:{index}",
        source=source,
        prompt=record["prompt"],
        response=None if is_missing(response) else response,
        prompt_harm_label=_harm(record.get("prompt_harm_label")),
        response_harm_label=None if is_missing(response) else _harm(record.get("response_harm_label")),
        categories=() if is_missing(subcategory) or subcategory == "benign" else (str(subcategory),),
        split="train" if subset == "wildguardtrain" else "test",
        extra=extra,
    )


def load_wildguardmix(subset: str = "wildguardtest", **download: Any) -> list[GuardExample]:
    """WildGuardMix (ODC-BY, gated): `wildguardtrain` (86,759) or `wildguardtest` (1,725, human labels).

    Prompt and response harm labels (harmful/unharmful) and extra['response_refusal_label'] (refusal/compliance).
    """
    if subset not in WILDGUARDMIX_FILES:
        raise ValueError(f"WildGuardMix subset must be one of {sorted(WILDGUARDMIX_FILES)}, got {subset!r}")
    mapper = lambda record, index: wildguardmix_example(record, index, subset=subset)  # noqa: E731
    return _load(WILDGUARDMIX_REPO, WILDGUARDMIX_FILES[subset], mapper, **download)


# ---------------------------------------------------------------- Aegis 2.0

AEGIS2_REPO = "nvidia/Aegis-AI-Content-Safety-Dataset-2.0"
AEGIS2_SPLITS = ("train", "validation", "test")


def aegis2_example(record: dict[str, Any], index: int, *, split: str, include_redacted: bool = False) -> GuardExample | None:
    """One Aegis 2.0 row: prompt_label / response_label safe/unsafe -> unharmful/harmful.

    Rows whose prompt is "REDACTED" (Suicide Detection texts to reconstruct separately) are dropped
    unless `include_redacted`.
    """
    return _aegis2_shaped(
        record, index, source=f"hf_aegis2_{split}", split="val" if split == "validation" else split,
        label_columns=("prompt_label", "response_label"), include_redacted=include_redacted,
        extra={"source_id": record.get("id"), "prompt_label_source": record.get("prompt_label_source"),
               "response_label_source": record.get("response_label_source")},
    )


def _aegis2_shaped(record: dict[str, Any], index: int, *, source: str, split: str, label_columns: tuple[str, str],
                   include_redacted: bool, extra: dict[str, Any]) -> GuardExample | None:
    """An Aegis 2.0-shaped row (Aegis 2.0 itself and the Nemotron reasoning dataset built on it). Rows
    whose prompt is "REDACTED" are dropped unless `include_redacted`; a missing response with a response
    label present is '' (the card: '' instead of null happens)."""
    if not is_missing(record.get("reconstruction_id_if_redacted")) and not include_redacted:
        return None
    response_label = _harm(record.get(label_columns[1]))
    response = record.get("response")
    if is_missing(response):
        response = "" if response_label else None
    return GuardExample(
        id=f"{source}:{index}", source=source, prompt=record["prompt"], response=response,
        prompt_harm_label=_harm(record.get(label_columns[0])), response_harm_label=response_label,
        categories=to_categories(record.get("violated_categories"), ","), split=split, extra=extra,
    )


def load_aegis2(split: str = "test", *, include_redacted: bool = False, **download: Any) -> list[GuardExample]:
    """Aegis 2.0 / Nemotron Content Safety Dataset V2 (CC-BY-4.0, gated): train 30,007, validation 1,445, test 1,964.

    Human prompt labels; response labels from humans, an LLM jury or refusal augmentation (see extra).
    """
    if split not in AEGIS2_SPLITS:
        raise ValueError(f"Aegis 2.0 split must be one of {AEGIS2_SPLITS}, got {split!r}")
    mapper = lambda record, index: aegis2_example(record, index, split=split, include_redacted=include_redacted)  # noqa: E731
    return _load(AEGIS2_REPO, f"{split}.json", mapper, **download)


# ---------------------------------------------------------------- ToxicChat

TOXICCHAT_REPO = "lmsys/toxic-chat"


def toxicchat_example(record: dict[str, Any], index: int, *, split: str) -> GuardExample:
    """One ToxicChat row: human `toxicity` 1 -> harmful, 0 -> unharmful (prompt level)."""
    source = f"hf_toxicchat_{split}"
    return GuardExample(
        id=f"{source}:{index}",
        source=source,
        prompt=record["user_input"],
        prompt_harm_label="harmful" if int(record["toxicity"]) == 1 else "unharmful",
        split=split,
        extra={
            "conv_id": record.get("conv_id"),
            "jailbreaking": None if is_missing(record.get("jailbreaking")) else int(record["jailbreaking"]),
            "human_annotation": record.get("human_annotation"),
        },
    )


def load_toxicchat_hub(split: str = "test", *, version: str = "0124", **download: Any) -> list[GuardExample]:
    """ToxicChat (CC-BY-NC-4.0) `toxicchat<version>` train or test CSV (0124: 5,082 / 5,083 rows)."""
    if split not in ("train", "test"):
        raise ValueError(f"ToxicChat split must be 'train' or 'test', got {split!r}")
    filename = f"data/{version}/toxic-chat_annotation_{split}.csv"
    mapper = lambda record, index: toxicchat_example(record, index, split=split)  # noqa: E731
    return _load(TOXICCHAT_REPO, filename, mapper, **download)


# ---------------------------------------------------------------- BeaverTails

BEAVERTAILS_REPO = "PKU-Alignment/BeaverTails"
BEAVERTAILS_FILES = {
    "30k_train": "round0/30k/train.jsonl.gz",
    "30k_test": "round0/30k/test.jsonl.gz",
    "330k_train": "round0/330k/train.jsonl.xz",
    "330k_test": "round0/330k/test.jsonl.xz",
}


def beavertails_example(record: dict[str, Any], index: int, *, split: str) -> GuardExample:
    """One BeaverTails QA pair: response harm = not is_safe; categories = the true harm-category flags."""
    source = f"hf_beavertails_{split}"
    return GuardExample(
        id=f"{source}:{index}",
        source=source,
        prompt=record["prompt"],
        response=record["response"],
        response_harm_label="unharmful" if record["is_safe"] else "harmful",
        categories=to_categories(record.get("category")),
        split="train" if split.endswith("train") else "test",
    )


def load_beavertails_hub(split: str = "30k_test", **download: Any) -> list[GuardExample]:
    """BeaverTails (CC-BY-NC-4.0): 30k_train / 30k_test / 330k_train / 330k_test QA pairs, response-level."""
    if split not in BEAVERTAILS_FILES:
        raise ValueError(f"BeaverTails split must be one of {sorted(BEAVERTAILS_FILES)}, got {split!r}")
    mapper = lambda record, index: beavertails_example(record, index, split=split)  # noqa: E731
    return _load(BEAVERTAILS_REPO, BEAVERTAILS_FILES[split], mapper, **download)


# ---------------------------------------------------------------- Nemotron Content Safety Reasoning

NEMOTRON_REASONING_REPO = "nvidia/Nemotron-Content-Safety-Reasoning-Dataset"
NEMOTRON_REASONING_FILES = {"safety": "aegis_v2_efficient_reasoning.jsonl", "topic_control": "tf_efficient_reasoning.jsonl"}
NEMOTRON_TEACHERS = ("deepseek_r1_0528", "gpt_oss_120b", "qwen3_32b")


def _traces(record: dict[str, Any], full_prefix: str, short_prefix: str) -> dict[str, Any]:
    traces: dict[str, Any] = {"reasoning": {}, "efficient_reasoning": {}, "prediction_gt_mismatch": {}}
    for teacher in NEMOTRON_TEACHERS:
        for key, column in (
            ("reasoning", f"{full_prefix}{teacher}"),
            ("efficient_reasoning", f"{short_prefix}{teacher}"),
            ("prediction_gt_mismatch", f"prediction_gt_mismatch_{teacher}"),
        ):
            if not is_missing(record.get(column)):
                traces[key][teacher] = record[column]
    return traces


def nemotron_safety_example(record: dict[str, Any], index: int, *, include_redacted: bool = False) -> GuardExample | None:
    """One row of the Aegis-2.0 part: prompt/response_harm_label harmful/unharmful + teacher traces in extra."""
    return _aegis2_shaped(
        record, index, source="hf_nemotron_safety_reasoning", split="train",
        label_columns=("prompt_harm_label", "response_harm_label"), include_redacted=include_redacted,
        extra={"source_id": record.get("id"), **_traces(record, "safety_reasoning_", "efficient_safety_reasoning_trace_")},
    )


def nemotron_topic_example(record: dict[str, Any], index: int) -> GuardExample:
    """One topic-control row: off-topic -> harmful (violates the policy in extra['policy']), on-topic -> unharmful."""
    source = "hf_nemotron_topic_control_reasoning"
    label = str(record["gt_topic_classification"]).strip().lower().replace("_", "-")
    if label not in ("on-topic", "off-topic"):
        raise ValueError(f"unexpected gt_topic_classification {record['gt_topic_classification']!r}")
    return GuardExample(
        id=f"{source}:{index}",
        source=source,
        prompt=record["last_user_message"],
        prompt_harm_label="harmful" if label == "off-topic" else "unharmful",
        split="train",
        extra={
            "policy": record["system_instruction"],
            "history": record.get("conversation_history"),
            **_traces(record, "safety_reasoning_trace_", "efficient_reasoning_trace_"),
        },
    )


def load_nemotron_reasoning(subset: str = "safety", *, include_redacted: bool = False, **download: Any) -> list[GuardExample]:
    """Nemotron Content Safety Reasoning Dataset (CC-BY-4.0): `safety` (28,000 Aegis 2.0 train items) or
    `topic_control` (8,712 CantTalkAboutThis turns), with full and efficient traces from three teachers.

    Column names follow the dataset card (Nov 2025); the card notes its viewer had schema errors, so a
    renamed column surfaces here as a KeyError naming it.
    """
    if subset not in NEMOTRON_REASONING_FILES:
        raise ValueError(f"Nemotron reasoning subset must be one of {sorted(NEMOTRON_REASONING_FILES)}, got {subset!r}")
    if subset == "safety":
        mapper = lambda record, index: nemotron_safety_example(record, index, include_redacted=include_redacted)  # noqa: E731
    else:
        mapper = nemotron_topic_example
    return _load(NEMOTRON_REASONING_REPO, NEMOTRON_REASONING_FILES[subset], mapper, **download)


__all__ = [
    "DatasetUnavailableError",
    "download_hub_file",
    "load_aegis2",
    "load_beavertails_hub",
    "load_nemotron_reasoning",
    "load_toxicchat_hub",
    "load_wildguardmix",
]
