"""Shared fixtures: repo paths, the shared datasets folder, provisioned models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    """A tiny random Llama with the real SmolLM2 tokenizer (built once, cached)."""
    from reasonguard.models import build_tiny_model

    return str(build_tiny_model())


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    from reasonguard.models import prepare_smollm2

    return str(prepare_smollm2())
