from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from reasonguard.metrics import (
    PARSE_FAILURE_POLICIES,
    Sample,
    aggregate_samples,
    binary_metrics,
    evaluate_predictions,
    majority_vote,
    sample_of,
    suite_averages,
)
from reasonguard.schema import REFUSAL_LABELS

H, U = "harmful", "unharmful"

# Hand case: tp (0), fn (1), failure on harmful (2), fp (3), tn (4), failure on unharmful (5), unlabelled (6).
GOLD = [H, H, H, U, U, U, None]
PRED = [H, U, None, H, U, None, H]


@pytest.mark.parametrize(
    "policy, tp, fp, fn, tn, precision, recall, f1",
    [
        ("count_as_wrong", 1, 2, 2, 1, 1 / 3, 1 / 3, 1 / 3),
        ("count_as_harmful", 2, 2, 1, 1, 1 / 2, 2 / 3, 4 / 7),
        ("count_as_unharmful", 1, 1, 2, 2, 1 / 2, 1 / 3, 2 / 5),
        ("exclude", 1, 1, 1, 1, 1 / 2, 1 / 2, 1 / 2),
    ],
)
def test_hand_computed_every_policy(policy, tp, fp, fn, tn, precision, recall, f1):
    m = binary_metrics(GOLD, PRED, policy=policy)
    assert (m.tp, m.fp, m.fn, m.tn) == (tp, fp, fn, tn)
    assert m.precision == pytest.approx(precision) and m.recall == pytest.approx(recall) and m.f1 == pytest.approx(f1)
    assert (m.n, m.n_parse_failures, m.n_unlabelled) == (6, 2, 1)
    assert m.parse_failure_rate == pytest.approx(2 / 6)
    assert m.n_scored == (4 if policy == "exclude" else 6)
    assert m.policy == policy and m.positive_label == H


def test_default_policy_is_count_as_wrong():
    assert binary_metrics(GOLD, PRED) == binary_metrics(GOLD, PRED, policy="count_as_wrong")


def test_parsed_ok_false_overrides_a_label():
    m = binary_metrics([H, U], [H, U], parsed_ok=[False, True])
    assert (m.tp, m.fp, m.fn, m.tn, m.n_parse_failures) == (0, 0, 1, 1, 1)
    assert m.f1 == 0.0


def test_zero_division_is_zero():
    m = binary_metrics([U, U], [U, U])
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0) and m.tn == 2
    empty = binary_metrics([None], [H])
    assert (empty.n, empty.n_unlabelled, empty.f1, empty.parse_failure_rate) == (0, 1, 0.0, 0.0)
    assert binary_metrics([H], [None], policy="exclude").f1 == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="policy"):
        binary_metrics([H], [H], policy="ignore")
    with pytest.raises(ValueError, match="same length"):
        binary_metrics([H, U], [H])
    with pytest.raises(ValueError, match="predicted label"):
        binary_metrics([H], ["refusal"])
    with pytest.raises(ValueError, match="gold label"):
        binary_metrics(["compliance"], [H])


def test_nan_gold_is_unlabelled_and_nan_pred_is_failure():
    m = binary_metrics([float("nan"), H], [H, float("nan")])
    assert (m.n_unlabelled, m.n, m.n_parse_failures, m.fn) == (1, 1, 1, 1)


def _apply_policy(gold, pred, ok, policy):
    """Independent restatement of the policies: resolve failures into labels, or drop them."""
    g_out, p_out = [], []
    for g, p, o in zip(gold, pred, ok):
        if g is None:
            continue
        if p is None or not o:
            if policy == "exclude":
                continue
            p = {"count_as_wrong": U if g == H else H, "count_as_harmful": H, "count_as_unharmful": U}[policy]
        g_out.append(g)
        p_out.append(p)
    return g_out, p_out


@pytest.mark.parametrize("policy", PARSE_FAILURE_POLICIES)
def test_agrees_with_sklearn_on_random_inputs(policy):
    rng = random.Random(20250526)
    checked_degenerate = 0
    for trial in range(300):
        n = rng.randint(1, 25)
        if trial % 10 == 0:  # no positives anywhere: sklearn's zero-division branch
            gold, pred, ok = [U] * n, [U] * n, [True] * n
        else:
            p_harm = rng.random()
            gold = [rng.choice([H, U, U, None]) if rng.random() > 0.1 else None for _ in range(n)]
            pred = [None if rng.random() < 0.2 else (H if rng.random() < p_harm else U) for _ in range(n)]
            ok = [rng.random() > 0.1 for _ in range(n)]
        m = binary_metrics(gold, pred, ok, policy=policy)
        g, p = _apply_policy(gold, pred, ok, policy)
        assert m.n_scored == len(g)
        if not g:
            assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
            continue
        precision, recall, f1, _ = precision_recall_fscore_support(
            g, p, pos_label=H, average="binary", zero_division=0
        )
        assert m.precision == pytest.approx(precision)
        assert m.recall == pytest.approx(recall)
        assert m.f1 == pytest.approx(f1)
        assert m.f1 == pytest.approx(f1_score(g, p, pos_label=H, zero_division=0))
        (tp, fn), (fp, tn) = confusion_matrix(g, p, labels=[H, U])
        assert (m.tp, m.fn, m.fp, m.tn) == (tp, fn, fp, tn)
        checked_degenerate += H not in g and H not in p
    assert checked_degenerate >= 30


def test_refusal_positive_label():
    gold = ["refusal", "refusal", "compliance", "compliance", "refusal"]
    pred = ["refusal", "compliance", "refusal", "compliance", None]
    m = binary_metrics(gold, pred, labels=REFUSAL_LABELS)
    # count_as_wrong: the failure on a refusal is a false negative -> tp1 fp1 fn2 tn1.
    assert (m.tp, m.fp, m.fn, m.tn) == (1, 1, 2, 1) and m.positive_label == "refusal"
    assert m.f1 == pytest.approx(2 / 5)
    as_positive = binary_metrics(gold, pred, labels=REFUSAL_LABELS, policy="count_as_harmful")
    assert (as_positive.tp, as_positive.fn) == (2, 1)
    flipped = binary_metrics(gold, pred, labels=("compliance", "refusal"))
    assert (flipped.tp, flipped.fp, flipped.fn, flipped.tn) == (1, 2, 1, 1)
    with pytest.raises(ValueError):
        binary_metrics(gold, [H] * 5, labels=REFUSAL_LABELS)


@pytest.mark.parametrize(
    "votes, expected",
    [
        ([H, U], H),  # tie -> positive
        ([H, H, U, U], H),
        ([U, U, H], U),
        ([H, None, U, U], U),
        ([None, U], U),  # failures do not vote
        ([None, None, H], H),
        ([None, None], None),
        ([], None),
    ],
)
def test_majority_vote(votes, expected):
    assert majority_vote(votes) == expected


def test_majority_vote_refusal_tie_and_bad_vote():
    assert majority_vote(["refusal", "compliance"], REFUSAL_LABELS) == "refusal"
    with pytest.raises(ValueError):
        majority_vote([H, "maybe"])


def _samples(table: dict[str, tuple[str | None, list[str | None]]]) -> list[Sample]:
    return [
        Sample(item_id=i, sample_idx=k, gold=gold, pred=p, parsed_ok=p is not None)
        for i, (gold, preds) in table.items()
        for k, p in enumerate(preds)
    ]


def test_aggregate_samples_runs_and_majority():
    # run 0: tp a, fn c, fp d, tn b -> F1 0.5; run 1: tp a,c fp b tn d -> 0.8;
    # run 2: a, d fail (fn, fp), tp c, tn b -> 0.5.
    table = {"a": (H, [H, H, None]), "b": (U, [U, H, U]), "c": (H, [U, H, H]), "d": (U, [H, U, None])}
    agg = aggregate_samples(_samples(table))
    assert [r.f1 for r in agg.runs] == pytest.approx([0.5, 0.8, 0.5])
    assert agg.f1_mean == pytest.approx(0.6)
    assert agg.f1_std == pytest.approx(math.sqrt(0.02))
    assert agg.precision_mean == pytest.approx(np.mean([0.5, 2 / 3, 0.5]))
    assert agg.recall_mean == pytest.approx(np.mean([0.5, 1.0, 0.5]))
    assert agg.parse_failure_rate_mean == pytest.approx(np.mean([0, 0, 0.5]))
    # Majority: a H, b U, c H, d tie (H vs U, one failure) -> H.
    m = agg.majority
    assert (m.tp, m.fp, m.fn, m.tn, m.n_parse_failures) == (2, 1, 0, 1, 0)
    assert m.f1 == pytest.approx(0.8) and agg.n_items == 4


def test_aggregate_no_parsed_sample_is_a_failure_and_missing_sample_counts_as_failure():
    table = {"a": (H, [None, None]), "b": (U, [U, U]), "c": (H, [H])}  # c lacks sample 1
    agg = aggregate_samples(_samples(table))
    assert agg.majority.n_parse_failures == 1 and agg.majority.fn == 1 and agg.majority.tp == 1
    assert [r.n_parse_failures for r in agg.runs] == [1, 2]
    assert agg.runs[1].fn == 2
    excluded = aggregate_samples(_samples(table), policy="exclude")
    assert excluded.majority.n_scored == 2 and excluded.majority.f1 == 1.0
    assert excluded.runs[1].n_scored == 1


def test_aggregate_one_run_has_zero_std_and_rejects_bad_rows():
    agg = aggregate_samples(_samples({"a": (H, [H]), "b": (U, [H])}))
    assert agg.f1_std == 0.0 and agg.f1_mean == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="two rows"):
        aggregate_samples([Sample("a", 0, H, H), Sample("a", 0, H, U)])
    with pytest.raises(ValueError, match="conflicting gold"):
        aggregate_samples([Sample("a", 0, H, H), Sample("a", 1, U, U)])
    empty = aggregate_samples([])
    assert empty.runs == () and empty.f1_mean == 0.0 and empty.majority.n == 0


def _rows():
    rows = []
    # toxicchat/prompt: 10 items, one sample each, latencies 1..10 s, tokens 10..100.
    for i in range(10):
        gold = H if i < 4 else U
        pred = H if i in (0, 1, 2, 5) else (None if i == 3 else U)
        rows.append(dict(dataset="toxicchat", task="prompt", item_id=f"t{i}", sample_idx=0, gold=gold, pred=pred,
                         parsed_ok=pred is not None, output_tokens=10 * (i + 1), latency_s=float(i + 1)))
    # beavertails/response: 3 items x 2 samples; per-item latency = mean of samples -> [2, 2, 6].
    spec = [("b0", H, [H, H], [1.0, 3.0]), ("b1", U, [U, H], [2.0, 2.0]), ("b2", H, [U, H], [4.0, 8.0])]
    for item, gold, preds, lats in spec:
        for k, (p, lat) in enumerate(zip(preds, lats)):
            rows.append(dict(dataset="beavertails", task="response", item_id=item, sample_idx=k, gold=gold, pred=p,
                             parsed_ok=True, output_tokens=5, latency_s=lat))
    # xstest/refusal: positive is "refusal".
    for i, (gold, pred) in enumerate([("refusal", "refusal"), ("compliance", "compliance"), ("refusal", "compliance")]):
        rows.append(dict(dataset="xstest", task="refusal", item_id=f"x{i}", sample_idx=0, gold=gold, pred=pred,
                         parsed_ok=True, output_tokens=None, latency_s=None))
    # aegis/prompt, with an unlabelled item.
    for i, (gold, pred) in enumerate([(H, H), (U, U), (None, H)]):
        rows.append(dict(dataset="aegis", task="prompt", item_id=f"a{i}", sample_idx=0, gold=gold, pred=pred,
                         parsed_ok=True, output_tokens=20, latency_s=0.5))
    return rows


def test_evaluate_predictions_table():
    reports = evaluate_predictions(_rows())
    assert [(r.dataset, r.task) for r in reports] == [
        ("aegis", "prompt"), ("beavertails", "response"), ("toxicchat", "prompt"), ("xstest", "refusal")]
    by = {r.dataset: r.to_record() for r in reports}

    # toxicchat: tp 3 (t0-t2), fn 1 (t3 failure), fp 1 (t5), tn 5 -> P 3/4, R 3/4, F1 3/4.
    tc = by["toxicchat"]
    assert tc["f1_mean"] == pytest.approx(0.75) and tc["majority_f1"] == pytest.approx(0.75)
    assert tc["parse_failure_rate"] == pytest.approx(0.1) and tc["n_items"] == 10 and tc["n_runs"] == 1
    assert tc["mean_output_tokens"] == pytest.approx(55.0)
    assert tc["latency_mean_s"] == pytest.approx(5.5)
    # p90 of 1..10, linear interpolation: position 0.9 * 9 = 8.1 -> 9 + 0.1 * (10 - 9) = 9.1.
    assert tc["latency_p90_s"] == pytest.approx(9.1)

    # beavertails: run 0 tp b0, tn b1, fn b2 -> F1 2/3; run 1 tp b0, b2, fp b1 -> F1 4/5.
    bt = by["beavertails"]
    assert bt["f1_mean"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert bt["f1_std"] == pytest.approx(abs(4 / 5 - 2 / 3) / 2)
    # Majority: b0 H, b1 tie -> H (fp), b2 tie -> H (tp) -> P 2/3, R 1, F1 4/5.
    assert bt["majority_f1"] == pytest.approx(0.8) and bt["majority_precision"] == pytest.approx(2 / 3)
    assert bt["n_samples"] == 6 and bt["mean_output_tokens"] == 5.0
    # Per-item latencies [2, 2, 6]: mean 10/3; p90 position 1.8 -> 2 + 0.8 * (6 - 2) = 5.2.
    assert bt["latency_mean_s"] == pytest.approx(10 / 3) and bt["latency_p90_s"] == pytest.approx(5.2)

    xs = by["xstest"]  # tp x0, tn x1, fn x2 -> P 1, R 1/2, F1 2/3
    assert xs["f1_mean"] == pytest.approx(2 / 3) and xs["recall_mean"] == pytest.approx(0.5)
    assert math.isnan(xs["latency_mean_s"]) and math.isnan(xs["mean_output_tokens"])

    ae = by["aegis"]
    assert ae["f1_mean"] == 1.0 and ae["n_items"] == 3 and ae["n_unlabelled"] == 1

    suite = suite_averages(reports)
    assert suite == pytest.approx({"prompt": (0.75 + 1.0) / 2, "response": bt["f1_mean"], "refusal": 2 / 3})
    assert suite_averages(reports, "majority_f1")["response"] == pytest.approx(0.8)


def test_evaluate_predictions_dataframe_with_nan_and_policy():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_rows())
    assert df["gold"].isna().sum() == 1
    from_df = [r.to_record() for r in evaluate_predictions(df)]
    from_rows = [r.to_record() for r in evaluate_predictions(_rows())]
    assert len(from_df) == len(from_rows)
    for a, b in zip(from_df, from_rows):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == b[key] or (isinstance(a[key], float) and math.isnan(a[key]) and math.isnan(b[key])), key
    excluded = {r.dataset: r for r in evaluate_predictions(_rows(), policy="exclude")}
    # toxicchat without t3: tp 3, fp 1, fn 0 -> F1 6/7.
    assert excluded["toxicchat"].scores.f1_mean == pytest.approx(6 / 7)


def test_evaluate_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        row = dict(dataset="d", task="topic", item_id="a", sample_idx=0, gold=H, pred=H, parsed_ok=True)
        evaluate_predictions([row])


def test_sample_of_prediction_row_dicts():
    """`PredictionRow.to_dict()` rows carry per-task columns instead of gold/pred."""
    row = dict(dataset="aegis", item_id="a", task="response", sample_idx=2, prompt_harm_gold=H, response_harm_gold=U,
               pred_prompt_harm=H, pred_response_harm=H, parsed_ok=True, output_tokens=7, latency_s=0.25)
    s = sample_of(row)
    assert (s.task, s.gold, s.pred, s.sample_idx, s.latency_s) == ("response", U, H, 2, 0.25)
    p = sample_of(row, "prompt")
    assert (p.task, p.gold, p.pred) == ("prompt", H, H)
    failed = sample_of({**row, "parsed_ok": False})
    assert failed.vote is None
    flat = dict(dataset="d", task="prompt", item_id="a", gold=H, pred=H)
    assert sample_of(flat, "response") is None and sample_of(flat).parsed_ok
    with pytest.raises(ValueError, match="gold"):
        sample_of(dict(item_id="a", task="refusal"))
