from __future__ import annotations

import pytest

from reasonguard.mining import (
    ITEM_CLASSES,
    classify_items,
    classify_outcomes,
    difficult_ids,
    select_ids,
    select_inconsistent,
)

H, U = "harmful", "unharmful"


def _flat(item_id, gold, preds, ok=None, task="prompt"):
    ok = ok or [p is not None for p in preds]
    return [dict(dataset="aegis", task=task, item_id=item_id, sample_idx=k, gold=gold, pred=p, parsed_ok=o)
            for k, (p, o) in enumerate(zip(preds, ok))]


def _crafted():
    return (
        _flat("right", H, [H, H, H])
        + _flat("wrong", U, [H, H, H])
        + _flat("mixed", H, [H, U, H])
        + _flat("fail_once", U, [U, None, U])  # a parse failure is wrong -> inconsistent
        + _flat("fail_all", H, [None, None, None])  # -> always wrong
        + _flat("flag_false", U, [U, U, U], ok=[True, False, True])  # parsed_ok=False wins over the label
        + _flat("unlabelled", None, [H, U, H])
    )


def test_all_three_classes_and_counts():
    result = classify_items(_crafted())
    assert result.classes == {
        "right": "always_right", "wrong": "always_wrong", "mixed": "inconsistent",
        "fail_once": "inconsistent", "fail_all": "always_wrong", "flag_false": "inconsistent",
    }
    assert result.counts == {"always_right": 1, "always_wrong": 2, "inconsistent": 3}
    assert sum(result.counts.values()) == len(result.classes)
    assert result.n_unlabelled == 1


def test_select_inconsistent_keeps_input_order():
    result = classify_items(_crafted())
    assert select_inconsistent(result) == ["mixed", "fail_once", "flag_false"]
    assert select_ids(result, "always_wrong") == ["wrong", "fail_all"]
    assert select_ids(result, "always_right") == ["right"]
    with pytest.raises(ValueError):
        select_ids(result, "easy")


def test_counts_include_zero_classes_and_single_sample_is_never_inconsistent():
    result = classify_items(_flat("a", H, [H]) + _flat("b", U, [H]))
    assert result.counts == {"always_right": 1, "always_wrong": 1, "inconsistent": 0}
    assert set(result.counts) == set(ITEM_CLASSES)
    assert select_inconsistent(result) == []


def test_classify_outcomes():
    assert classify_outcomes([True, True]) == "always_right"
    assert classify_outcomes([False]) == "always_wrong"
    assert classify_outcomes([False, True, False]) == "inconsistent"
    with pytest.raises(ValueError):
        classify_outcomes([])


def _prediction_rows():
    """`PredictionRow.to_dict()`-shaped rows: each sample scores prompt and response harm."""
    spec = {
        # item: (prompt gold, response gold, [(pred prompt, pred response, parsed_ok), ...])
        "p_mixed": (H, U, [(H, U, True), (U, U, True)]),
        "r_mixed": (U, H, [(U, H, True), (U, U, True)]),
        "both_right": (H, H, [(H, H, True), (H, H, True)]),
        "failure": (H, U, [(H, U, True), (H, U, False)]),
        "prompt_only": (U, None, [(U, None, True), (H, None, True)]),
    }
    rows = []
    for item, (pg, rg, samples) in spec.items():
        for k, (pp, pr, ok) in enumerate(samples):
            rows.append(dict(dataset="aegis", item_id=item, task="response" if rg else "prompt", sample_idx=k,
                             prompt_harm_gold=pg, response_harm_gold=rg, pred_prompt_harm=pp,
                             pred_response_harm=pr, parsed_ok=ok))
    return rows


def test_prompt_and_response_tasks_from_prediction_rows():
    prompt = classify_items(_prediction_rows(), task="prompt")
    assert prompt.classes == {"p_mixed": "inconsistent", "r_mixed": "always_right", "both_right": "always_right",
                              "failure": "inconsistent", "prompt_only": "inconsistent"}
    response = classify_items(_prediction_rows(), task="response")
    assert response.classes == {"p_mixed": "always_right", "r_mixed": "inconsistent", "both_right": "always_right",
                                "failure": "inconsistent"}
    assert response.n_unlabelled == 1
    assert difficult_ids(_prediction_rows(), tasks=("prompt", "response")) == [
        "p_mixed", "r_mixed", "failure", "prompt_only"]
    assert difficult_ids(iter(_prediction_rows()), tasks=("response",)) == ["r_mixed", "failure"]


def test_flat_rows_task_filter_and_dataframe():
    rows = _flat("a", H, [H, U]) + _flat("b", U, [U, U], task="response")
    assert classify_items(rows, task="response").classes == {"b": "always_right"}
    assert classify_items(rows, task="prompt").classes == {"a": "inconsistent"}
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_crafted())
    assert classify_items(df).classes == classify_items(_crafted()).classes
