from __future__ import annotations

import pytest

from reasonguard.policy import AEGIS_2_POLICY, Policy, categories_policy, resolve_policy, text_policy


def test_resolve_forms():
    assert resolve_policy(None) is AEGIS_2_POLICY
    assert resolve_policy("default") is AEGIS_2_POLICY
    assert resolve_policy(["A", "B"]).categories[1].code == "S2"
    assert resolve_policy("No talk of cats.").text == "No talk of cats."


def test_invalid_policies():
    with pytest.raises(ValueError):
        categories_policy([])
    with pytest.raises(ValueError):
        categories_policy(["ok", " "])
    with pytest.raises(ValueError):
        text_policy("   ")
    with pytest.raises(ValueError):
        Policy()
    with pytest.raises(ValueError, match="limit"):
        text_policy("x" * 20_001)


def test_category_lookup():
    assert AEGIS_2_POLICY.category_name("s9") == "PII/Privacy"
    assert AEGIS_2_POLICY.category_name("S99") is None
