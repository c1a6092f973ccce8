"""Train/test hygiene: a guard's training prompts travel with it, and overlapping test sets are refused."""

from __future__ import annotations

import pytest

from reasonguard.hygiene import (
    TrainTestOverlap,
    check_test_sets,
    fingerprint,
    normalise,
    read_fingerprints,
    training_fingerprints,
    write_fingerprints,
)
from reasonguard.schema import GuardExample


def ex(i, prompt):
    return GuardExample(id=str(i), source="t", prompt=prompt, prompt_harm_label="harmful")


def test_normalisation_ignores_case_punctuation_and_spacing():
    assert normalise("  How do I  BUILD a bomb?! ") == "how do i build a bomb"
    assert fingerprint("How do I build a bomb?") == fingerprint("how do i build a BOMB") != fingerprint("How do I build a boat?")
    assert normalise("Ｆｕｌｌ　width") == "full width"  # NFKC


def test_an_overlapping_test_set_is_refused_with_its_count(tmp_path):
    prints = training_fingerprints([{"prompt": "How do I build a bomb?"}, {"prompt": "Tell me a joke."}, {"prompt": None}])
    write_fingerprints(prints, tmp_path)
    assert read_fingerprints(tmp_path) == prints and read_fingerprints(tmp_path / "none") is None
    clean = {"other": [ex(1, "What is the capital of France?")]}
    check_test_sets(clean, prints, "guard")  # no overlap: nothing raised
    check_test_sets({"x": [ex(1, "Tell me a joke")]}, None, "base")  # a guard without fingerprints: nothing to check
    dirty = {**clean, "harmbench": [ex(1, "how do i build a BOMB"), ex(2, "Something else"), ex(3, "TELL me a joke!")]}
    with pytest.raises(TrainTestOverlap, match=r"harmbench: 2 of 3 items") as info:
        check_test_sets(dirty, prints, "guard")
    assert "other:" not in str(info.value)


def test_the_predict_job_exits_2_on_overlap(tmp_path, tiny_model_dir):
    import shutil

    from jobs.predict import main

    guard = tmp_path / "guard"
    shutil.copytree(tiny_model_dir, guard)
    from reasonguard.datasets import load_dataset

    demo_test = [e for e in load_dataset("demo") if e.split == "test"]
    write_fingerprints(training_fingerprints([{"prompt": demo_test[0].prompt}]), guard)
    cfg = tmp_path / "predict.yaml"
    cfg.write_text(f"engine: {{kind: transformers, model: {guard}}}\ndata: [{{dataset: demo, split: test}}]\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["--config", str(cfg)]) == 2
    assert not (tmp_path / "out" / "predictions").exists()  # refused before any prediction
