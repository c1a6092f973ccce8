"""Fixtures for the dataset tests: the vendored datasets folder (tests skip cleanly without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonguard.datasets.local import DATASETS_DIR_ENV, default_datasets_root


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """The resolved datasets root; skips the test when there is none (e.g. CI without ../shared)."""
    try:
        return default_datasets_root()
    except FileNotFoundError as exc:
        pytest.skip(f"vendored datasets not available ({exc}); set {DATASETS_DIR_ENV} to run these checks")
