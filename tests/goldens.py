"""Golden-file comparison for byte-exact format tests."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def golden(name: str, actual: str) -> str:
    """Compare with tests/golden/<name>; REASONGUARD_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN_DIR / name
    if os.environ.get("REASONGUARD_UPDATE_GOLDEN") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(f"golden file {path} is missing")
        path.write_text(actual, encoding="utf-8")
    return path.read_text(encoding="utf-8")
