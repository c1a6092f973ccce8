from __future__ import annotations

import pytest

from reasonguard.schema import GuardExample


def test_row_round_trip():
    ex = GuardExample("s:1", "s", "p", "r", "harmful", "unharmful", ("S1",), "train", {"k": [1, 2]})
    assert GuardExample.from_row(ex.to_row()) == ex
    assert isinstance(ex.to_row()["extra"], str)


def test_label_validation():
    with pytest.raises(ValueError, match="prompt_harm_label"):
        GuardExample("a", "s", "p", prompt_harm_label="unsafe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without a response"):
        GuardExample("a", "s", "p", response_harm_label="harmful")
    with pytest.raises(ValueError, match="id"):
        GuardExample("", "s", "p")


def test_categories_become_tuple():
    ex = GuardExample("a", "s", "p", categories=["S1"])  # type: ignore[arg-type]
    assert ex.categories == ("S1",)
