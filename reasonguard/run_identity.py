"""What a resumable output folder was made by, so that a re-run resumes only its own run.

Distill, predict and train resume what an output folder already holds. Re-run with another model,
sampling or data into the same folder, they would silently mix two runs (predictions of an old
checkpoint reported as the new one's). Each stage writes its run identity (the config fields that
decide its outputs, plus a fingerprint of local model files) into the folder on first use and
compares it on every later run: a difference is an error naming the fields, or, where the caller
asks for it (the demo chain), the folder is started afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IDENTITY_FILE = "run_identity.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_EDGE = 2**20


class RunIdentityMismatch(ValueError):
    """An output folder holds a run of another configuration."""


def file_fingerprint(path: str | Path) -> str | None:
    """A cheap content fingerprint of a local file, or of a folder's weight and config files (size and
    the first and last MiB of each: a retrained checkpoint differs there, a re-export of the same one
    does not); None when nothing is there (a hub id, a remote path: named by the string itself)."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        return None
    files = [p] if p.is_file() else sorted(
        f for f in p.rglob("*") if f.is_file() and (f.suffix in _WEIGHT_SUFFIXES or f.name == "config.json"))
    digest = hashlib.sha1()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.name if f == p else f.relative_to(p)}:{size}\n".encode())
        with open(f, "rb") as handle:
            digest.update(handle.read(_EDGE))
            if size > 2 * _EDGE:
                handle.seek(size - _EDGE)
                digest.update(handle.read(_EDGE))
    return digest.hexdigest()[:16]


def differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ, each with both values (short)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(saved) | set(current), key=str):
            out += differences(saved.get(key), current.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    if saved == current:
        return []

    def short(value: Any) -> str:
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    return [f"{prefix or 'value'}: {short(saved)} -> {short(current)}"]


def claim_output_dir(folder: str | Path, identity: dict, what: str, *, restart_on_change: bool = False) -> bool:
    """Record `identity` in `folder`, or check it against the one recorded there.

    Returns True when the folder was emptied because its run differed (`restart_on_change`); raises
    RunIdentityMismatch otherwise. A folder without a record (made before records existed) is adopted."""
    folder = Path(folder)
    current = json.loads(json.dumps(identity, sort_keys=True, default=str))
    record = folder / IDENTITY_FILE
    restarted = False
    if record.exists():
        diffs = differences(json.loads(record.read_text()), current)
        if not diffs:
            return False
        if not restart_on_change:
            raise RunIdentityMismatch(
                f"{folder} holds {what} of another configuration ({'; '.join(diffs)}); resuming would mix the "
                f"two runs. Use another output_dir (or run_name), or delete {folder} to start afresh.")
        log.warning("%s: the configuration changed since the last run (%s): starting %s afresh", folder,
                    "; ".join(diffs), what)
        shutil.rmtree(folder)
        restarted = True
    folder.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    tmp.replace(record)
    return restarted


def engine_identity(engine) -> dict:
    """What of an EngineConfig decides its outputs: the model (and its files' fingerprint), kind, dtype,
    seed, and for a remote server its URL; not throughput or retry settings."""
    from reasonguard.models import model_fingerprint

    return {"kind": engine.kind, "model": engine.model, "model_files": model_fingerprint(engine.model),
            "dtype": engine.dtype, "seed": engine.seed, "base_url": engine.base_url}
