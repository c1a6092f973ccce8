"""Submit a stage as a Ray job to a running cluster, stream its logs, exit with its status.

    reasonguard submit predict --address http://127.0.0.1:8265 --config cluster/configs/predict_local.yaml \
        --set data.0.limit=4
    reasonguard submit train --config cluster/configs/train_gpu.yaml --no-wait   # prints the job id
    reasonguard submit --stop reasonguard-train-20261122-101500-a1b2c3           # stop a running job

The same as `ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- python -m
jobs.<stage> --config ...`, plus: the config path is checked before anything is uploaded, the
job gets a readable id and metadata, Ctrl-C stops the job on the cluster (not only the log
stream), and the exit status is the job's (0 succeeded, 1 failed, 3 stopped, 130 interrupted).
The decisions are pure functions in reasonguard/deploy/submit.py; this module only talks to Ray.

Outputs: the job runs in a copy of the working directory on the cluster, so relative output paths
land in that copy. Give absolute paths on shared storage (`--set output_dir=/shared/x`, `s3://…`),
or, for a head on this machine, run the checkout in place: `--working-dir local://$PWD`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Sequence

from reasonguard.deploy import submit as plan

STOP_WAIT_S = 60.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reasonguard submit",
        description="Submit a stage as a Ray job (JobSubmissionClient), stream its logs, exit with its status.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 succeeded, 1 failed, 3 stopped, 130 interrupted (the job is stopped), 2 usage error",
    )
    parser.add_argument("stage", nargs="?", help="stage to run (demo, distill, ..., serve); omit with --stop")
    parser.add_argument(
        "--address", default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or plan.DEFAULT_ADDRESS,
        help=f"job server (dashboard) URL (default: $RAY_API_SERVER_ADDRESS, $RAY_ADDRESS or {plan.DEFAULT_ADDRESS})",
    )
    parser.add_argument("--config", "-c", help="the stage's YAML config, inside the working directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override passed to the stage (repeatable)")
    parser.add_argument("--runtime-env", default=plan.DEFAULT_RUNTIME_ENV,
                        help=f"runtime env YAML (default {plan.DEFAULT_RUNTIME_ENV}; '' for none)")
    parser.add_argument("--working-dir", default=None,
                        help="override the runtime env's working_dir: a local folder (uploaded) or a URI "
                             "(local:///path = already on every node, run in place; s3://...zip)")
    parser.add_argument("--submission-id", default=None, help="job id (default reasonguard-<stage>-<time>-<hex>)")
    parser.add_argument("--entrypoint-num-cpus", type=float, default=None, help="CPUs reserved for the driver")
    parser.add_argument("--no-wait", action="store_true", help="return after submitting; print the job id")
    parser.add_argument("--stop", metavar="JOB_ID", help="stop a running job and wait until it has stopped")
    return parser


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def _wait_terminal(client, job_id: str, timeout_s: float | None = None, poll_s: float = 1.0) -> str:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id))
        if plan.is_terminal(status) or (deadline is not None and time.monotonic() > deadline):
            return status
        time.sleep(poll_s)


async def _stream_logs(client, job_id: str) -> None:
    async for chunk in client.tail_job_logs(job_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def follow(client, job_id: str) -> str:
    """Stream the job's logs until it ends; returns the final status."""
    try:
        asyncio.run(_stream_logs(client, job_id))
    except RuntimeError as exc:  # the log socket dropped before the end: fall back to polling
        print(f"\n>> log stream ended early ({exc}); waiting for the job to finish", file=sys.stderr)
    return _wait_terminal(client, job_id)


def stop(client, job_id: str) -> str:
    """Ask the job server to stop `job_id`; returns the status once final (or after STOP_WAIT_S)."""
    if not client.stop_job(job_id):
        status = str(client.get_job_status(job_id))
        print(f">> job {job_id} was not running ({status})", file=sys.stderr)
        return status
    print(f">> stopping job {job_id}", file=sys.stderr)
    return _wait_terminal(client, job_id, timeout_s=STOP_WAIT_S)


def _report(client, job_id: str, status: str) -> int:
    info = client.get_job_info(job_id)
    line = f">> job {job_id}: {status}"
    message = (getattr(info, "message", None) or "").strip()
    if status != "SUCCEEDED" and message:
        line += f": {message.splitlines()[0]}"  # the rest repeats the log tail already streamed
    print(line, file=sys.stderr)
    return plan.exit_code(status)


def _prepare(args: argparse.Namespace) -> dict:
    """Everything checked locally before the cluster is contacted (a bad path exits 2, nothing submitted)."""
    runtime_env = plan.load_runtime_env(args.runtime_env or None, args.working_dir)
    config = plan.job_config_path(args.config, runtime_env.get("working_dir"))
    return {
        "entrypoint": plan.build_entrypoint(args.stage, config, args.overrides),
        "runtime_env": runtime_env,
        "submission_id": args.submission_id or plan.submission_id(args.stage),
        "metadata": {"reasonguard_stage": args.stage, "reasonguard_config": config},
        "entrypoint_num_cpus": args.entrypoint_num_cpus,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stop and args.stage:
        parser.error("--stop takes a job id; do not name a stage")
    if not args.stop:
        if not args.stage or not args.config:
            parser.error("a stage and --config are required (or --stop JOB_ID)")
        try:
            plan.stage_module(args.stage)
            plan.validate_overrides(args.overrides)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        request = None if args.stop else _prepare(args)
    except ValueError as exc:  # a bad config path, runtime env or working_dir: nothing was submitted
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        client = _client(args.address)
        if args.stop:
            status = stop(client, args.stop)
            print(f">> job {args.stop}: {status}", file=sys.stderr)
            return 0 if plan.is_terminal(status) else 1
        print(f">> submitting {request['submission_id']} to {args.address}: {request['entrypoint']}", file=sys.stderr)
        job_id = client.submit_job(**request)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        print(f"error: {plan.explain_client_error(exc, args.address)}", file=sys.stderr)
        return 1
    if args.no_wait:
        print(job_id)
        print(f">> follow: ray job logs -f --address {args.address} {job_id}", file=sys.stderr)
        print(f">> stop:   reasonguard submit --address {args.address} --stop {job_id}", file=sys.stderr)
        return 0
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        status = stop(client, job_id)
        print(f">> job {job_id}: {status} (interrupted)", file=sys.stderr)
        return plan.EXIT_INTERRUPTED
    return _report(client, job_id, status)


if __name__ == "__main__":
    sys.exit(main())
