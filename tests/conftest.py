"""Shared fixtures: repo paths, the shared datasets folder, provisioned models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(autouse=True, scope="module")
def _ray_stopped_after_module():
    """Each test module gets its own Ray: a stage run in-process leaves its Ray up (a job's process
    would exit), and the next module must not inherit its CPUs, actors or a run still going."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


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


# --- a real OpenAI-compatible `vllm serve` (engine tests and the HTTP-teacher pipeline test) ---


@pytest.fixture(scope="session")
def vllm_tiny_dir() -> str:
    """The shared tiny Llama (head size 32, which vllm-cpu's attention accepts)."""
    from reasonguard.models import build_tiny_model

    return str(build_tiny_model())


@pytest.fixture(scope="session")
def vllm_server(vllm_tiny_dir, tmp_path_factory):
    """A real OpenAI-compatible `vllm serve` of the tiny model on a loopback port: yields its base URL.
    One for the session (the engine, distill and moderation tests share it; it starts in about a minute)."""
    import subprocess

    from vllm_servers import HAS_VLLM, free_port, stop_process_group, vllm_serve_command, wait_healthy

    if not HAS_VLLM:
        pytest.skip("vllm (vllm-cpu or vllm) is not installed: no server to test against")
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            vllm_serve_command(vllm_tiny_dir, port, "tiny"), stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}/health", 240, log_path)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process_group(proc)
