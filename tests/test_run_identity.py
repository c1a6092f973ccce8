"""Run identities: a resumable output folder resumes only a run of the same configuration."""

from __future__ import annotations

import json

import pytest

from reasonguard.run_identity import (IDENTITY_FILE, RunIdentityMismatch, claim_output_dir, differences,
                                      file_fingerprint)


def test_first_claim_records_and_same_identity_resumes(tmp_path):
    out = tmp_path / "run"
    assert claim_output_dir(out, {"model": "a", "sampling": {"t": 0.6}}, "predictions") is False
    assert json.loads((out / IDENTITY_FILE).read_text()) == {"model": "a", "sampling": {"t": 0.6}}
    (out / "part-0.parquet").write_text("kept")
    assert claim_output_dir(out, {"sampling": {"t": 0.6}, "model": "a"}, "predictions") is False
    assert (out / "part-0.parquet").exists()


def test_changed_identity_is_an_error_naming_the_fields(tmp_path):
    out = tmp_path / "run"
    claim_output_dir(out, {"model": "smollm2", "sampling": {"t": 0.6, "top_p": 0.95}}, "training checkpoints")
    with pytest.raises(RunIdentityMismatch) as err:
        claim_output_dir(out, {"model": "embedded-guard", "sampling": {"t": 0.6, "top_p": 0.9}}, "training checkpoints")
    message = str(err.value)
    assert 'model: "smollm2" -> "embedded-guard"' in message and "sampling.top_p: 0.95 -> 0.9" in message
    assert "sampling.t:" not in message and f"delete {out}" in message
    assert json.loads((out / IDENTITY_FILE).read_text())["model"] == "smollm2"  # nothing was overwritten


def test_restart_on_change_empties_the_folder(tmp_path):
    out = tmp_path / "run"
    claim_output_dir(out, {"model": "a"}, "traces")
    (out / "parts").mkdir()
    (out / "parts" / "p.parquet").write_text("old")
    assert claim_output_dir(out, {"model": "b"}, "traces", restart_on_change=True) is True
    assert not (out / "parts").exists()
    assert json.loads((out / IDENTITY_FILE).read_text()) == {"model": "b"}


def test_a_folder_without_a_record_is_adopted(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "predictions.parquet").write_text("x")
    assert claim_output_dir(tmp_path / "old", {"model": "a"}, "predictions") is False
    assert (tmp_path / "old" / "predictions.parquet").exists()


def test_differences_walks_nested_values_and_missing_keys():
    assert differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": None}}) == ["a.c: 2 -> 3"]
    assert differences({"a": 1}, {"b": 1}) == ["a: 1 -> null", "b: null -> 1"]


def test_file_fingerprint_follows_content_not_rewrites(tmp_path):
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 4096)
    (model / "README.md").write_text("notes")
    first = file_fingerprint(model)
    (model / "model.safetensors").write_bytes(b"\0" * 4096)  # re-exported, same weights
    (model / "README.md").write_text("other notes")  # not a weight file
    assert file_fingerprint(model) == first
    (model / "model.safetensors").write_bytes(b"\1" + b"\0" * 4095)  # retrained
    assert file_fingerprint(model) != first
    assert file_fingerprint(tmp_path / "missing") is None and file_fingerprint("org/hub-model") is None
