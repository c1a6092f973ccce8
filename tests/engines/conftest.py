"""Engine-test helpers; the `vllm_tiny_dir` and `vllm_server` fixtures live in tests/conftest.py (shared
with the pipeline tests), the server helpers in tests/vllm_servers.py."""

from __future__ import annotations

from vllm_servers import HAS_VLLM, free_port, needs_vllm, stop_process_group, vllm_serve_command, wait_healthy

__all__ = ["HAS_VLLM", "free_port", "needs_vllm", "stop_process_group", "vllm_serve_command", "wait_healthy"]
