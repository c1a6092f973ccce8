"""Shared helpers of tests that run real servers and jobs: an ASGI app on a loopback port (uvicorn in a
thread), and a job process killed once it has written its first output part."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(app, start_timeout_s: float = 60) -> tuple[str, object, threading.Thread]:
    """(base URL, uvicorn server, thread) of `app` on a loopback port; stop with
    `server.should_exit = True; thread.join()`. The socket is bound here and handed to the server, so no
    other process can take the port between choosing and binding it."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


def kill_after_first_part(command: list[str], parts: Path, log_path: Path, cwd, timeout_s: float = 300,
                          parts_needed: int = 1) -> None:
    """Run `command` in its own process group and SIGKILL the whole group (its own Ray included) as
    soon as `parts_needed` `part-*.parquet` files are in `parts`."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while len(list(parts.glob("part-*.parquet"))) < parts_needed:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no part written in time"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def engine_actors(state: str | None = None) -> list[dict]:
    """EngineActor pool actors from the GCS actor table (ray.util.state needs the dashboard, which
    init_ray leaves off)."""
    from ray._private.state import actors

    return [a for a in actors(actor_state_name=state).values() if "EngineActor" in a["ActorClassName"]]


def kill_one_engine_actor_mid_run(run, parts: Path, timeout_s: float = 300) -> tuple[dict, int]:
    """Run `run()` in a thread; once two engine actors are alive and a part is written, SIGKILL the first
    actor's process. Returns (the victim's actor record, rows written before the kill) after `run` ends."""
    import threading

    from reasonguard.io import read_parts

    errors: list[BaseException] = []

    def target():
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    deadline = time.monotonic() + timeout_s
    victim = None
    while victim is None:
        assert worker.is_alive() and time.monotonic() < deadline, f"run ended before the kill: {errors}"
        alive = engine_actors("ALIVE")
        if len(alive) == 2 and list(parts.glob("part-*.parquet")):
            victim = alive[0]
        else:
            time.sleep(0.2)
    written_before = len(read_parts(parts))
    os.kill(victim["Pid"], signal.SIGKILL)
    worker.join(timeout_s)
    assert not worker.is_alive() and not errors, errors
    return victim, written_before
