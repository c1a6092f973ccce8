"""The topic-following held-out split: deterministic, by scenario, balanced over domains, and clean
(no prompt of the held-out scenarios is in the training part, so the hygiene check lets a guard
trained on one be evaluated on the other)."""

from __future__ import annotations

import collections

from reasonguard.datasets import load_dataset, local
from reasonguard.datasets.sources import load_source
from reasonguard.config.common import DataSource
from reasonguard.hygiene import check_test_sets, training_fingerprints


def _scenarios(domains):
    return [{"domain": d} for d in domains]


def test_held_out_scenarios_are_every_fifth_of_each_domain_from_the_third():
    domains = ["a"] * 12 + ["b"] * 3 + ["a"] * 2 + ["c"] * 2
    held = local.topic_held_out_scenarios(_scenarios(domains))
    # domain a: ids 0..11, 15, 16 -> positions 2, 7, 12 = ids 2, 7, 15; b: ids 12, 13, 14 -> position 2 = id 14; c: none
    assert held == {2, 7, 15, 14}
    assert local.topic_held_out_scenarios(_scenarios(domains)) == held  # deterministic
    assert local.topic_held_out_scenarios(_scenarios(["a"] * 4), every=2) == {1, 3}


def test_vendored_split_is_disjoint_complete_and_clean(datasets_root):
    every = load_dataset("topic_following", root=datasets_root)
    train = load_dataset("topic_following_train", root=datasets_root)
    test = load_dataset("topic_following_test", root=datasets_root)
    assert (len(every), len(train), len(test)) == (1546, 1229, 305)
    assert {e.split for e in train} == {"train"} and {e.split for e in test} == {"test"}
    train_scenarios = {e.extra["scenario_id"] for e in train}
    test_scenarios = {e.extra["scenario_id"] for e in test}
    assert not train_scenarios & test_scenarios and len(test_scenarios) == 35
    # every domain is tested; both labels are
    assert set(collections.Counter(e.categories[0] for e in test)) == {e.categories[0] for e in every}
    assert collections.Counter(e.prompt_harm_label for e in test) == {"unharmful": 203, "harmful": 93, None: 9}
    # nothing lost but the training turns whose prompt also occurs in a held-out scenario
    ids = {e.id for e in train} | {e.id for e in test}
    assert ids <= {e.id for e in every} and len(every) - len(ids) == 12
    check_test_sets({"topic_following_test": test}, training_fingerprints(e.to_row() for e in train), "guard")


def test_held_out_part_loads_through_a_data_source(datasets_root):
    rows = load_source(DataSource(dataset="topic_following_test", root=str(datasets_root), split="test"))
    assert len(rows) == 305 and all(r.extra["policy"] for r in rows)
