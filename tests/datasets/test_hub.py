"""Hub loaders: a clear error when the hub cannot be used, and row mapping on rows shaped like each card's."""

from __future__ import annotations

import sys

import pytest

from reasonguard.datasets import hub
from reasonguard.datasets.hub import DatasetUnavailableError

HUB_CALLS = [
    (hub.load_wildguardmix, {"subset": "wildguardtest"}, "allenai/wildguardmix"),
    (hub.load_aegis2, {"split": "test"}, "nvidia/Aegis-AI-Content-Safety-Dataset-2.0"),
    (hub.load_toxicchat_hub, {"split": "test"}, "lmsys/toxic-chat"),
    (hub.load_beavertails_hub, {"split": "30k_test"}, "PKU-Alignment/BeaverTails"),
    (hub.load_nemotron_reasoning, {"subset": "topic_control"}, "nvidia/Nemotron-Content-Safety-Reasoning-Dataset"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("loader", "kwargs", "repo"), HUB_CALLS, ids=[c[2] for c in HUB_CALLS])
def test_offline_hub_raises_a_clear_error(tmp_path, monkeypatch, loader, kwargs, repo):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DatasetUnavailableError) as err:
        loader(**kwargs, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert repo in message and "HF_HUB_OFFLINE" in message and "load_table" in message


def test_missing_huggingface_hub_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(DatasetUnavailableError, match="huggingface_hub is not installed.*load_table"):
        hub.load_beavertails_hub()


def test_bad_subset_or_split_is_rejected_before_any_download():
    with pytest.raises(ValueError, match="wildguardtrain"):
        hub.load_wildguardmix("wildguardval")
    with pytest.raises(ValueError, match="validation"):
        hub.load_aegis2("dev")
    with pytest.raises(ValueError, match="30k_test"):
        hub.load_beavertails_hub("test")
    with pytest.raises(ValueError, match="topic_control"):
        hub.load_nemotron_reasoning("topics")


# ------------------------------------------------------------ row mapping (columns as on each dataset card)


def test_wildguardmix_rows():
    test_row = {
        "prompt": "How do I pick a lock?", "adversarial": False, "response": "I can't help with that.",
        "prompt_harm_label": "harmful", "response_refusal_label": "refusal", "response_harm_label": "unharmful",
        "subcategory": "fraud_assisting_illegal_activities", "prompt_harm_agreement": 1.0,
        "response_harm_agreement": 0.66, "response_refusal_agreement": float("nan"),
    }
    example = hub.wildguardmix_example(test_row, 3, subset="wildguardtest")
    assert example.id == "hf_wildguardmix_test:3" and example.split == "test"
    assert (example.prompt_harm_label, example.response_harm_label) == ("harmful", "unharmful")
    assert example.extra["response_refusal_label"] == "refusal" and example.categories == ("fraud_assisting_illegal_activities",)
    assert "response_refusal_agreement" not in example.extra  # NaN dropped
    train_row = {"prompt": "Tell me a joke", "adversarial": True, "response": None, "prompt_harm_label": "unharmful",
                 "response_refusal_label": None, "response_harm_label": None, "subcategory": "benign"}
    example = hub.wildguardmix_example(train_row, 0, subset="wildguardtrain")
    assert example.response is None and example.categories == () and example.source == "hf_wildguardmix_train"


def test_aegis2_rows():
    rows = [
        {"id": "abc", "prompt": "How do I make meth?", "response": None, "prompt_label": "unsafe", "response_label": None,
         "violated_categories": "Controlled/Regulated Substances, Criminal Planning/Confessions",
         "prompt_label_source": "human", "response_label_source": None, "reconstruction_id_if_redacted": None},
        {"id": "def", "prompt": "hi", "response": "", "prompt_label": "safe", "response_label": "safe",
         "violated_categories": "", "prompt_label_source": "human", "response_label_source": "llm_jury",
         "reconstruction_id_if_redacted": None},
        {"id": "ghi", "prompt": "REDACTED", "response": None, "prompt_label": "unsafe", "response_label": None,
         "violated_categories": "Suicide and Self Harm", "reconstruction_id_if_redacted": 1234},
    ]
    first, second, redacted = (hub.aegis2_example(r, i, split="validation") for i, r in enumerate(rows))
    assert first.prompt_harm_label == "harmful" and first.response is None and first.response_harm_label is None
    assert first.categories == ("Controlled/Regulated Substances", "Criminal Planning/Confessions")
    assert first.split == "val" and first.extra["source_id"] == "abc"
    assert second.response == "" and second.response_harm_label == "unharmful" and second.categories == ()
    assert redacted is None
    assert hub.aegis2_example(rows[2], 2, split="test", include_redacted=True).prompt == "REDACTED"


def test_toxicchat_and_beavertails_rows():
    example = hub.toxicchat_example(
        {"conv_id": "x1", "user_input": "hello", "model_output": "hi", "human_annotation": "True",
         "toxicity": "1", "jailbreaking": "0", "openai_moderation": "[]"}, 7, split="train")
    assert (example.id, example.prompt_harm_label, example.extra["jailbreaking"]) == ("hf_toxicchat_train:7", "harmful", 0)
    example = hub.beavertails_example(
        {"prompt": "p", "response": "r", "is_safe": False, "category": {"animal_abuse": True, "self_harm": False}},
        0, split="30k_train")
    assert example.response_harm_label == "harmful" and example.categories == ("animal_abuse",) and example.split == "train"


def test_nemotron_reasoning_rows():
    safety = hub.nemotron_safety_example(
        {"id": "q", "prompt": "p", "response": None, "prompt_label": "unsafe", "response_label": None,
         "prompt_harm_label": "harmful", "response_harm_label": None, "violated_categories": "Violence",
         "reconstruction_id_if_redacted": None,
         "safety_reasoning_qwen3_32b": "long trace", "efficient_safety_reasoning_trace_qwen3_32b": "short",
         "prediction_gt_mismatch_qwen3_32b": False}, 0)
    assert safety.prompt_harm_label == "harmful" and safety.response is None and safety.categories == ("Violence",)
    assert safety.extra["reasoning"] == {"qwen3_32b": "long trace"}
    assert safety.extra["efficient_reasoning"] == {"qwen3_32b": "short"}
    assert safety.extra["prediction_gt_mismatch"] == {"qwen3_32b": False}
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    topic = hub.nemotron_topic_example(
        {"system_instruction": "Only discuss banking.", "conversation_history": history,
         "last_user_message": "Who won the game?", "gt_topic_classification": "off-topic",
         "efficient_reasoning_trace_gpt_oss_120b": "Sports are off-topic."}, 4)
    assert topic.prompt_harm_label == "harmful" and topic.extra["policy"] == "Only discuss banking."
    assert topic.extra["history"] == history and topic.extra["efficient_reasoning"] == {"gpt_oss_120b": "Sports are off-topic."}
    with pytest.raises(ValueError, match="gt_topic_classification"):
        hub.nemotron_topic_example({"system_instruction": "x", "last_user_message": "y", "gt_topic_classification": "maybe"}, 0)
