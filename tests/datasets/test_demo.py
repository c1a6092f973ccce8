"""The embedded demo sample: size, balance, licenses, no external folder, and exact regeneration."""

from __future__ import annotations

import collections
from importlib import resources

import pytest

from reasonguard.datasets import demo, local
from reasonguard.datasets.demo import DEMO_SOURCES, build_demo_sample, demo_rows_jsonl, load_demo, render_attribution
from reasonguard.datasets.registry import load_dataset

PACKAGED = resources.files("reasonguard").joinpath("data", "demo")


def kinds(rows):
    return collections.Counter(
        ("response", r.response_harm_label) if r.response is not None else ("prompt", r.prompt_harm_label) for r in rows
    )


def test_demo_size_and_balance():
    rows = load_demo()
    assert len(rows) == 64 and len({r.id for r in rows}) == 64
    assert kinds(rows) == {("prompt", "harmful"): 24, ("prompt", "unharmful"): 24,
                           ("response", "harmful"): 8, ("response", "unharmful"): 8}
    assert kinds(load_demo("test")) == {("prompt", "harmful"): 8, ("prompt", "unharmful"): 8,
                                        ("response", "harmful"): 2, ("response", "unharmful"): 2}
    assert len(load_demo("train")) == 44


def test_demo_rows_are_short_and_permissively_licensed():
    rows = load_demo()
    assert all(len(r.prompt) < demo.MAX_CHARS and len(r.response or "") < demo.MAX_CHARS for r in rows)
    assert {DEMO_SOURCES[r.source][2] for r in rows} == {"MIT", "CC-BY-4.0"}
    attribution = PACKAGED.joinpath("ATTRIBUTION.md").read_text(encoding="utf-8")
    assert all(r.id in attribution for r in rows)
    for upstream, commit, license_name in DEMO_SOURCES.values():
        assert commit in attribution and license_name in attribution


def test_demo_needs_no_datasets_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(local.DATASETS_DIR_ENV, raising=False)
    monkeypatch.setattr(local, "_FALLBACK_ROOT", tmp_path / "no-shared")
    with pytest.raises(FileNotFoundError):
        local.default_datasets_root()
    assert len(load_demo()) == 64


def test_demo_regenerates_byte_for_byte(datasets_root):
    rows = build_demo_sample(load_dataset, datasets_root)
    assert demo_rows_jsonl(rows) == PACKAGED.joinpath("demo.jsonl").read_text(encoding="utf-8")
    assert render_attribution(rows) == PACKAGED.joinpath("ATTRIBUTION.md").read_text(encoding="utf-8")
    assert build_demo_sample(load_dataset, datasets_root, seed=1) != rows  # the seed matters


def test_demo_rows_match_their_source_datasets(datasets_root):
    from reasonguard.datasets.registry import load_dataset

    by_source = collections.defaultdict(dict)
    for row in load_demo():
        if row.source not in by_source:
            by_source[row.source] = {e.id: e for e in load_dataset(row.source)}
        original = by_source[row.source][row.id]
        assert (original.prompt, original.response, original.prompt_harm_label, original.response_harm_label) == (
            row.prompt, row.response, row.prompt_harm_label, row.response_harm_label)
