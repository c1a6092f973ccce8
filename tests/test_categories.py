"""Violated categories: the mapping tables, the answer line, resolving what a guard named, per-category scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reasonguard.categories import (AEGIS_CODES, CATEGORY_MAPS, aegis_codes, category_family, category_report,
                                    category_scores, category_table, format_categories_line, macro_f1,
                                    mapping_table_markdown, resolve_categories)
from reasonguard.policy import AEGIS_2_POLICY, categories_policy, text_policy
from reasonguard.verdict import format_output, parse_verdict

DOC = Path(__file__).resolve().parents[1] / "docs" / "categories.md"


def test_every_mapped_code_is_an_aegis_code():
    for family, table in CATEGORY_MAPS.items():
        for native, codes in table.items():
            assert codes and set(codes) <= set(AEGIS_CODES), (family, native)


def test_native_categories_map_to_sorted_unique_codes_and_unknown_ones_are_not_guessed():
    assert aegis_codes("strongreject", ["Violence"]) == ("S1",)
    assert aegis_codes("jailbreakbench_responses", ["Malware/Hacking"]) == ("S16",)  # an alias of a family
    assert aegis_codes("beavertails", ["violence,aiding_and_abetting,incitement", "terrorism,organized_crime"]) == ("S1", "S3", "S21")
    assert aegis_codes("openai_moderation", ["H2", "S3"]) == ("S7", "S8", "S11")
    assert aegis_codes("strongreject", ["Violence", "Not a StrongREJECT category"]) is None
    assert aegis_codes("my_own_file", ["anything"]) is None
    # Data already in Aegis 2.0 terms (the Aegis 2.0 / Nemotron sets on the hub): codes or names.
    assert aegis_codes("hf_aegis2_test", ["Criminal Planning/Confessions", "s1"]) == ("S1", "S3")
    assert category_family("HarmBench_test") == "harmbench" and category_family("toxicchat") is None


def test_the_categories_line_round_trips_through_the_parser():
    text = format_output("harmful", "unharmful", "It asks for a weapon.", ["S4", "S21"])
    assert text.endswith("Response harm: unharmful\nSafety categories: S4, S21")
    verdict = parse_verdict(text, expect_response=True)
    assert verdict.parsed_ok and verdict.categories == ("S4", "S21")
    none = parse_verdict(format_output("unharmful", None, categories=()), expect_response=False)
    assert none.parsed_ok and none.categories == () and format_categories_line(()) == "Safety categories: None"
    assert format_output("unharmful", None) == "Prompt harm: unharmful\nResponse harm: None"  # off by default


def test_resolving_named_categories_against_the_policy():
    assert resolve_categories(["s10", "S1.", "Violence", "S99"], AEGIS_2_POLICY) == (["S10", "S1"], ["Harassment", "Violence"])
    assert resolve_categories(["Threat", "a paraphrase", "None"], AEGIS_2_POLICY) == (["S11"], ["Threat", "a paraphrase"])
    custom = categories_policy(["Medical advice", "Competitors"])
    assert resolve_categories(["S2", "medical advice"], custom) == (["S2", "S1"], ["Competitors", "Medical advice"])
    assert resolve_categories(["off-topic chat"], text_policy("Stay on cooking.")) == ([], ["off-topic chat"])


def test_scores_per_native_category_count_any_mapped_code():
    gold = [["H2"], ["V"], [], ["H"]]
    named = [["S11"], [], ["S1"], ["S8", "S1"]]
    scores = {s.category: s for s in category_scores("openai_moderation", gold, named)}
    assert (scores["H2"].support, scores["H2"].predicted, scores["H2"].true_positive) == (1, 2, 1)  # S8 or S11
    assert scores["V"].support == 1 and scores["V"].predicted == 2 and scores["V"].true_positive == 0
    assert scores["V"].f1 == 0.0 and scores["H"].recall == 1.0 and scores["H"].precision == 1.0  # S11 is not H's
    assert scores["SH"].f1 is None  # neither gold nor named: undefined, not zero
    assert macro_f1(list(scores.values())) == pytest.approx((2 * 0.5 / 1.5 + 0 + 1) / 3)
    with pytest.raises(ValueError):
        category_scores("openai_moderation", gold, named[:2])


def test_category_report_groups_by_dataset_and_mode_and_skips_unasked_rows():
    rows = [
        {"dataset": "openai_moderation", "mode": "no_think", "pred_categories": json.dumps(["S2"]), "categories_gold": json.dumps(["S"])},
        {"dataset": "openai_moderation", "mode": "no_think", "pred_categories": json.dumps([]), "categories_gold": "[]"},
        {"dataset": "openai_moderation", "mode": "think", "pred_categories": None, "categories_gold": json.dumps(["S"])},
        {"dataset": "toxicchat", "mode": "no_think", "pred_categories": "[]", "categories_gold": "[]"},
    ]
    records = category_report(rows)
    assert {(r["dataset"], r["mode"]) for r in records} == {("openai_moderation", "no_think")}
    sexual = next(r for r in records if r["category"] == "S")
    assert (sexual["support"], sexual["predicted"], sexual["true_positive"], sexual["f1"]) == (1, 1, 1, 1.0)
    macro = next(r for r in records if r["category"] == "macro")
    assert macro["support"] == 1 and macro["predicted"] == 1 and macro["f1"] == 1.0
    table = category_table(records)
    assert "| openai_moderation | no_think | S | S2 | 1 | 1 | 100.0 | 100.0 | 100.0 |" in table


def test_docs_carry_the_mapping_tables():
    text = DOC.read_text()
    block = re.search(r"<!-- mapping-tables:start -->\n(.*)<!-- mapping-tables:end -->", text, re.S)
    assert block, "docs/categories.md lost its generated block"
    assert block.group(1) == mapping_table_markdown(), "regenerate with: python -m reasonguard.categories --docs docs/categories.md"
