"""Train/test hygiene enforced by code: a trained guard carries the fingerprints of its training
prompts, and a test set any of whose items appear among them is refused, not reported.

Fingerprint = sha1 of the normalised prompt (Unicode NFKC, case-folded, every run of
non-alphanumerics one space), so trivial edits (case, punctuation, whitespace) still match.
Prompts, not prompt + response: a response-level test item whose prompt was trained on is
contaminated too (HarmBench's response set reuses its prompts).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Mapping, Sequence

FINGERPRINT_FILE = "training_fingerprints.json"
_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


class TrainTestOverlap(ValueError):
    """A test set shares items with the guard's training rows."""


def normalise(text: str) -> str:
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", text or "").casefold()).strip()


def fingerprint(text: str) -> str:
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def training_fingerprints(rows: Iterable[Mapping]) -> set[str]:
    """Fingerprints of the prompts of SFT rows (or any rows with a `prompt`)."""
    return {fingerprint(r["prompt"]) for r in rows if r.get("prompt")}


def write_fingerprints(prints: set[str], folder: str | Path, source: str = "") -> Path:
    path = Path(folder) / FINGERPRINT_FILE
    path.write_text(json.dumps({"normalisation": "nfkc-casefold-alnum", "source": source, "count": len(prints),
                                "prompt_sha1": sorted(prints)}))
    return path


def read_fingerprints(model_dir: str | Path | None) -> set[str] | None:
    """The guard's training fingerprints, or None when it has none (a base model, a hub id)."""
    if model_dir is None:
        return None
    path = Path(model_dir) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    return set(json.loads(path.read_text())["prompt_sha1"])


def overlapping(examples: Sequence, prints: set[str]) -> list[str]:
    """Ids of examples whose prompt was trained on."""
    return [ex.id for ex in examples if fingerprint(ex.prompt) in prints]


def check_test_sets(datasets: Mapping[str, Sequence], prints: set[str] | None, model: str) -> None:
    """Refuse (TrainTestOverlap) when any test set shares a prompt with the guard's training rows."""
    if not prints:
        return
    bad = {name: ids for name, exs in datasets.items() if (ids := overlapping(exs, prints))}
    if bad:
        detail = "; ".join(f"{name}: {len(ids)} of {len(datasets[name])} items (e.g. {ids[0]})" for name, ids in sorted(bad.items()))
        raise TrainTestOverlap(
            f"guard {model} was trained on prompts of these test sets: {detail}. A guard is not evaluated on data it was "
            f"trained on: drop these sets, or evaluate another guard ({FINGERPRINT_FILE} lists its training prompts)."
        )
