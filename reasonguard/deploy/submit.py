"""What `reasonguard submit` sends to a Ray cluster, as pure functions (no Ray import).

`jobs/submit.py` is the thin part that talks to the job server (`JobSubmissionClient`); the
decisions live here so they are unit-tested without a cluster: which module a stage runs, the
one-line shell entrypoint, the runtime env (the checkout as `working_dir`, minus environments,
outputs and caches), the submission id, and how a final job status becomes an exit code.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

# The terminal states of ray.job_submission.JobStatus, and the exit status each one maps to.
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
TERMINAL_STATUSES = frozenset(EXIT_CODES)
# Ctrl-C in the submitting shell: the job is stopped, then the command exits like an interrupted one.
EXIT_INTERRUPTED = 130
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_RUNTIME_ENV = "cluster/runtime_env.yaml"
# Never uploaded with a local working_dir, whatever the runtime env file says: Ray caps the package
# at 512 MiB and these are GBs (gitignore-style, anchored at the working_dir; see runtime_env.yaml).
DEFAULT_EXCLUDES = ("/.venv", "/.git", "/outputs", "/checkpoints", "__pycache__", ".pytest_cache", "*.egg-info")


def stage_modules() -> dict[str, str]:
    """Stage name -> `jobs.<module>` for every stage of the CLI (`sft-data` and `sft_data` both work)."""
    from reasonguard.cli import STAGES

    out: dict[str, str] = {}
    for name, (module, _) in STAGES.items():
        if name == "submit":
            continue
        out[name] = module
        out[name.replace("-", "_")] = module
    return out


def stage_module(stage: str) -> str:
    modules = stage_modules()
    if stage not in modules:
        names = [n for n in modules if n.replace("_", "-") == n or n.replace("_", "-") not in modules]
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(names)}")
    return modules[stage]


def is_uri(value: str) -> bool:
    """`s3://…`, `gs://…`, `local:///…`, `https://…` (a Windows drive letter is not a scheme)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", value) is not None


def job_config_path(config: str, working_dir: str | None, cwd: str | Path | None = None) -> str:
    """The `--config` argument as the job will see it: relative to the job's working directory.

    With a local `working_dir` (uploaded to the cluster) the file must exist and lie inside it,
    otherwise the job would not find it. With a URI working_dir (`local:///…` code in the image,
    `s3://…zip`) the file lives on the cluster side and is passed as given.
    """
    if not config:
        raise ValueError("--config is required")
    if working_dir is None or is_uri(working_dir):
        return config
    cwd = Path(cwd or os.getcwd())
    wd = (cwd / working_dir).resolve()
    path = (cwd / config).resolve()
    if not path.is_file():
        raise ValueError(f"config file {config} does not exist")
    try:
        return path.relative_to(wd).as_posix()
    except ValueError:
        raise ValueError(
            f"config file {path} is outside the working directory {wd} that is uploaded to the cluster; "
            "copy it into the checkout (e.g. cluster/configs/) or pass --working-dir"
        ) from None


def validate_overrides(overrides: Sequence[str]) -> list[str]:
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ValueError(f"--set takes key=value (dotted keys), got {bad}")
    return list(overrides)


def build_entrypoint(stage: str, config: str, overrides: Sequence[str] = (), extra_args: Sequence[str] = (), python: str = "python") -> str:
    """`python -m jobs.<stage> --config <config> --set k=v ...`, shell-quoted, ONE command.

    The job server runs the entrypoint through a shell (and a KubeRay submitter pastes it into one):
    every argument is quoted so that a value with spaces or `;` stays one argument.
    """
    argv = [python, "-m", stage_module(stage), "--config", config]
    for item in validate_overrides(overrides):
        argv += ["--set", item]
    argv += list(extra_args)
    return shlex.join(argv)


def load_runtime_env(path: str | Path | None, working_dir: str | None = None, cwd: str | Path | None = None) -> dict[str, Any]:
    """The job's runtime env: the YAML file (if any), `working_dir` overridden, local dirs made absolute.

    A local working_dir always gets DEFAULT_EXCLUDES added, so a custom runtime env file cannot
    upload .venv or outputs by accident. Relative paths resolve against `cwd`, as `ray job submit`
    resolves them (run it from the repository root).
    """
    env: dict[str, Any] = {}
    if path is not None:
        file = Path(cwd or os.getcwd()) / path
        if not file.is_file():
            raise ValueError(f"runtime env file {path} does not exist (run from the repository root, or pass --runtime-env)")
        text = file.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"runtime env {path} must be a mapping, not {type(loaded).__name__}")
        env = loaded
    if working_dir is not None:
        env["working_dir"] = working_dir
    env.setdefault("working_dir", ".")
    wd = env["working_dir"]
    if wd in ("", None):
        env.pop("working_dir")
        env.pop("excludes", None)
        return env
    if not isinstance(wd, str):
        raise ValueError(f"working_dir must be a path or a URI, got {wd!r}")
    if is_uri(wd):
        env.pop("excludes", None)  # only applies to a local directory that is zipped and uploaded
        return env
    local = (Path(cwd or os.getcwd()) / wd).resolve()
    if not local.is_dir():
        raise ValueError(f"working_dir {wd} is not a directory")
    env["working_dir"] = str(local)
    excludes = list(env.get("excludes") or [])
    env["excludes"] = excludes + [e for e in DEFAULT_EXCLUDES if e not in excludes]
    return env


def submission_id(stage: str, now: datetime | None = None, token: str | None = None) -> str:
    """`reasonguard-<stage>-<UTC yyyymmdd-hhmmss>-<6 hex>`: sortable, names the stage, unique."""
    now = now or datetime.now(timezone.utc)
    token = token or secrets.token_hex(3)
    return f"reasonguard-{stage.replace('_', '-')}-{now:%Y%m%d-%H%M%S}-{token}"


def is_terminal(status: str) -> bool:
    return str(status) in TERMINAL_STATUSES


def exit_code(status: str) -> int:
    """0 succeeded, 1 failed, 3 stopped; a non-terminal status is a caller error."""
    status = str(status)
    if status not in EXIT_CODES:
        raise ValueError(f"job status {status!r} is not final (final: {sorted(EXIT_CODES)})")
    return EXIT_CODES[status]


def explain_client_error(exc: BaseException, address: str) -> str:
    """A one-paragraph hint for the usual reasons a job server refuses or cannot be reached."""
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if "authentication" in low or "401" in low or "unauthenticated" in low:
        return (
            f"{text}\nThe cluster at {address} uses token auth (Ray 2.60 turns it on when ~/.ray/auth_token exists). "
            "Run with RAY_AUTH_MODE=token (the token is read from ~/.ray/auth_token), or start the local head "
            "with RAY_AUTH_MODE=disabled (cluster/scripts/start_local_head.sh does by default)."
        )
    if "connect" in low or "refused" in low or "timed out" in low or "failed to establish" in low:
        return (
            f"{text}\nNo Ray job server answers at {address}. Start one (cluster/scripts/start_local_head.sh), "
            "or port-forward a KubeRay head (kubectl port-forward svc/<cluster>-head-svc 8265:8265)."
        )
    return text
