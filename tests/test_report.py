import math

from reasonguard.report import cost_table, render_report, suite_table, summary, write_plots


def rec(guard, mode, task, dataset, f1, tokens=10.0, latency=0.5, vote=None):
    return {"guard": guard, "mode": mode, "task": task, "dataset": dataset, "f1_mean": f1, "majority_f1": f1 if vote is None else vote,
            "mean_output_tokens": tokens, "latency_mean_s": latency, "latency_p90_s": latency * 2, "parse_failure_rate": 0.1,
            "budget": None}


RECORDS = [
    rec("a", "think", "prompt", "aegis", 0.8, tokens=100), rec("a", "think", "prompt", "toxicchat", 0.6, tokens=120),
    rec("a", "no_think", "prompt", "aegis", 0.7, tokens=8), rec("a", "no_think", "prompt", "toxicchat", float("nan"), tokens=8),
    rec("a", "think", "response", "beavertails", 0.5),
]


def test_suite_table_rows_columns_and_unweighted_average():
    table = suite_table(RECORDS, "prompt").splitlines()
    assert table[0] == "| guard | mode | aegis | toxicchat | avg |"
    assert "| a | think | 80.0 | 60.0 | 70.0 |" in table
    assert "| a | no_think | 70.0 | - | 70.0 |" in table  # NaN shown as '-' and left out of the average
    assert suite_table(RECORDS, "refusal") == ""


def test_summary_and_cost_table():
    s = {(x["mode"], x["task"]): x for x in summary(RECORDS)}
    assert math.isclose(s[("think", "prompt")]["f1_mean"], 0.7) and s[("think", "prompt")]["mean_output_tokens"] == 110
    assert "| a | no_think | 8.0 | 0.500 | 1.000 | 10.0 |" in cost_table(RECORDS)


def test_report_and_plots_are_written(tmp_path):
    paths = write_plots(RECORDS, tmp_path)
    assert [p.name for p in paths] == ["f1_per_dataset.png", "f1_vs_tokens.png", "latency_vs_budget.png"]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    text = render_report("T", RECORDS, [str(p) for p in paths])
    for heading in ("Prompt harm (harmful-class F1), mean over samples", "Prompt harm (harmful-class F1), majority vote",
                    "Response harm (harmful-class F1), mean over samples", "Cost per item", "![f1_vs_tokens](f1_vs_tokens.png)"):
        assert heading in text
