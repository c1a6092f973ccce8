"""Golden-file comparison for byte-exact format tests.

A test run only reads goldens: a missing golden fails. Goldens change through one explicit command,
`make goldens` (`python -m tests.goldens`), which writes what the code renders now; review the diff.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE_ENV = "REASONGUARD_WRITE_GOLDENS"  # set by `python -m tests.goldens` only
GOLDEN_TESTS = ("tests/test_prompts.py",)


def golden(name: str, actual: str) -> str:
    """The content of tests/golden/<name>; under `python -m tests.goldens`, `actual` is written first."""
    path = GOLDEN_DIR / name
    if os.environ.get(UPDATE_ENV) == "1":
        path.write_text(actual, encoding="utf-8")
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; write it with `make goldens` and review the diff")
    return path.read_text(encoding="utf-8")


def main() -> int:
    """Rewrite every golden from the current code (the golden tests run once with writing on)."""
    import subprocess

    env = {**os.environ, UPDATE_ENV: "1"}
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", *GOLDEN_TESTS], env=env)
    subprocess.call(["git", "status", "--short", str(GOLDEN_DIR)])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
