"""The processes ``benchmarks.webload`` starts, each a context manager that stops it again:
a throwaway redis-server on a free loopback port (``redis_server``), the uvicorn web tier
serving ``examples/fastapi_workers.py`` (``web_tier``, its environment from ``_tier_env``);
with the helpers they share (``free_port``, ``wait_for_port``) and the constants the parts
use (``HOST``, ``KEY``, ``MAX_WAIT``). The fake API is ``benchmarks._server.ServerProcess``;
part 4's bulk process, the load it measures, stays with that part.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "HOST",
    "KEY",
    "MAX_WAIT",
    "_tier_env",
    "free_port",
    "redis_server",
    "wait_for_port",
    "web_tier",
]

HOST = "127.0.0.1"
KEY = "webload-bench-key"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP = "fastapi_workers:app"
MAX_WAIT = 2.0  # the web tier's bound on a request's wait (examples/fastapi_workers.py)
START_TIMEOUT = 60.0  # seconds for every uvicorn worker to finish its startup


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


def _stop(proc: subprocess.Popen[Any], *, group: bool = False, timeout: float = 20.0) -> None:
    """Terminate *proc* (and, with *group*, whatever is left of the session it leads)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the workers, had any outlived it


# -- redis-server --------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, no persistence; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--dir", tmp]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            yield f"redis://{HOST}:{port}/0"
        finally:
            _stop(proc, timeout=10.0)


# -- the uvicorn web tier ------------------------------------------------------------------


class _StartupWatch:
    """Reads uvicorn's log: counts the workers whose startup completed, passes on what is
    not routine, keeps the last lines for an error message."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._ready = 0
        self._changed = threading.Condition()
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self._thread = threading.Thread(target=self._read, name="uvicorn-log", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            text = raw.rstrip("\n")
            self.tail.append(text)
            if "Application startup complete" in text:
                with self._changed:
                    self._ready += 1
                    self._changed.notify_all()
            elif not text.startswith("INFO:"):
                print(f"  [web tier] {text}", file=sys.stderr, flush=True)
        with self._changed:
            self._changed.notify_all()

    def wait(self, workers: int, proc: subprocess.Popen[Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._ready < workers:
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    tail = "\n".join(self.tail)
                    raise RuntimeError(f"{self._ready}/{workers} workers started:\n{tail}")
                self._changed.wait(min(left, 0.2))

    def join(self) -> None:
        self._thread.join(timeout=5.0)


@contextlib.contextmanager
def web_tier(env: dict[str, str], *, workers: int) -> Iterator[str]:
    """``uvicorn fastapi_workers:app --factory --workers N``, once every worker's startup
    has completed; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", APP, "--factory", "--app-dir", str(EXAMPLES)]
    command += ["--workers", str(workers), "--host", HOST, "--port", str(port)]
    command += ["--log-level", "info", "--no-access-log"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("DUMPLING")}
    proc = subprocess.Popen(
        command,
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the workers go with it
    )
    watch = _StartupWatch(proc.stderr)
    try:
        watch.wait(workers, proc, START_TIMEOUT)
        wait_for_port(port)
        yield f"http://{HOST}:{port}"
    finally:
        _stop(proc, group=True)
        watch.join()


def _tier_env(api_url: str, redis_url: str, *, shared_cache: bool) -> dict[str, str]:
    """The web tier's environment: the key, the fake API, the Redis, and whether it shares
    a RedisCache."""
    return {
        "DUMPLINGAI_API_KEY": KEY,
        "DUMPLINGAI_API_URL": api_url,
        "DUMPLING_REDIS_URL": redis_url,
        "DUMPLING_SHARED_CACHE": "1" if shared_cache else "0",
    }
