"""`python -m jobs.chain`: the stages of a chain file run in order as their own processes, the run
stops at the first failing stage (named, its log shown), records every finished stage, and resumes
with --from. Real stage processes (sft_data: seconds, no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import yaml
from chain_files import FAILING_AT_B, STAGES, mend_stage_b, write_chain

def run_chain(root, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.chain", "chain.yaml", "--logs", "logs", *args],
                          cwd=root, capture_output=True, text=True, timeout=300)


def test_the_chain_stops_at_the_failing_stage_and_resumes_from_it(tmp_path):
    write_chain(tmp_path, STAGES, FAILING_AT_B)
    failed = run_chain(tmp_path)
    assert failed.returncode == 2, failed.stderr
    assert "stage 2/3 (sft_data, b.yaml) failed with exit 2" in failed.stderr and "--from 2" in failed.stderr
    assert "missing/traces.parquet" in failed.stderr  # the stage's own message, from its log's end
    record = json.loads((tmp_path / "logs/chain_run.json").read_text())
    assert [(s["position"], s["exit_code"]) for s in record["stages"]] == [(1, 0), (2, 2)]
    assert pq.read_table(tmp_path / "outputs/a/sft.parquet").num_rows == 8
    assert not (tmp_path / "outputs/c").exists()  # nothing after the failure ran

    mend_stage_b(tmp_path)
    resumed = run_chain(tmp_path, "--from", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "[1/3]" not in resumed.stdout and "chain done: 2 stages" in resumed.stdout
    assert [s["position"] for s in json.loads((tmp_path / "logs/chain_run.json").read_text())["stages"]] == [2, 3]
    assert pq.read_table(tmp_path / "outputs/c/sft.parquet").num_rows == 8  # the stage's --set applied


def test_a_chain_that_does_not_chain_runs_nothing(tmp_path):
    write_chain(tmp_path, [{"stage": "sft_data", "config": "b.yaml"}], {"datasets": ["demo"]})
    result = run_chain(tmp_path)
    assert result.returncode == 2
    assert "does not chain" in result.stderr and "missing/traces.parquet" in result.stderr
    assert not (tmp_path / "logs").exists() and not (tmp_path / "outputs").exists()


def test_replacements_move_the_chain_and_dry_run_prints_the_commands(tmp_path):
    write_chain(tmp_path, [{"stage": "sft_data", "config": "a.yaml"}], {"datasets": ["demo"]})
    result = run_chain(tmp_path, "--replace", "outputs/=elsewhere/", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1/1] python -m jobs.sft_data --config logs/configs/01-sft_data-a.yaml"
    assert yaml.safe_load((tmp_path / "logs/configs/01-sft_data-a.yaml").read_text())["output"] == "elsewhere/a/sft.parquet"
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "elsewhere").exists()


def test_with_an_address_each_stage_goes_through_the_job_submitter(tmp_path):
    write_chain(tmp_path, [{"stage": "sft_data", "config": "a.yaml", "set": {"seed": 3}}], {"datasets": ["demo"]})
    in_place = run_chain(tmp_path, "--address", "http://head:8265", "--dry-run")
    assert in_place.returncode == 0, in_place.stderr
    argv = in_place.stdout.split()
    assert argv[1:5] == ["python", "-m", "jobs.submit", "sft_data"]  # reasonguard submit: Ctrl-C stops the job
    assert argv[5:11] == ["--address", "http://head:8265", "--config", "a.yaml", "--set", "seed=3"]
    assert argv[11:15] == ["--working-dir", f"local://{tmp_path.resolve()}", "--runtime-env", "cluster/runtime_env.yaml"]
    assert argv[15] == "--submission-id" and argv[16].startswith("chain-") and argv[16].endswith("-01-sft-data")

    # uploaded: the rewritten config goes as written; the submitter checks it lies in the uploaded folder
    uploaded = run_chain(tmp_path, "--address", "http://head:8265", "--working-dir", ".", "--replace", "outputs/=/shared/",
                         "--dry-run")
    assert uploaded.returncode == 0, uploaded.stderr
    assert "--config logs/configs/01-sft_data-a.yaml" in uploaded.stdout and "--working-dir . " in uploaded.stdout

    alone = run_chain(tmp_path, "--working-dir", ".", "--dry-run")
    assert alone.returncode == 2 and "--working-dir and --runtime-env go with --address" in alone.stderr
