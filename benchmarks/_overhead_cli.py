"""The command line's own overhead: ``dumpling-async profiles`` vs ``iter_profiles``.

For each event loop (asyncio, forced with ``DUMPLINGAI_EVENT_LOOP=asyncio``, then the
command line's default: uvloop when it is installed) the library's ``iter_profiles``
runs in this process on the loop, then the command line runs as a subprocess::

    dumpling-async profiles INPUT -o OUT.jsonl --base-url URL --concurrency 16 -q

on the same handles (INPUT one handle a line, OUT a fresh file, the key from
``DUMPLINGAI_API_KEY``). Its wall time covers everything: the interpreter's start, the
imports, reading INPUT, writing every result to OUT. A second run on an empty INPUT
gives that fixed start-and-exit cost, shown apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ._overhead_contenders import (
    API_KEY,
    CONCURRENCY,
    Measurement,
    check_server,
    has_uvloop,
    measure,
    run_client_iter,
)
from ._server import ServerProcess

__all__ = ["CliRun", "cli_script", "measure_cli"]

TARGET_CLI_RATIO = 0.85


@dataclass(frozen=True)
class CliRun:
    loop: str  # what the command line ran on
    handles: int
    wall: float  # the whole subprocess
    startup: float  # the same on an empty input
    library: Measurement  # iter_profiles in this process, same loop, same handles

    @property
    def ratio(self) -> float:
        """The command line's throughput / the library's."""
        return self.library.wall / self.wall

    @property
    def ratio_without_startup(self) -> float:
        return self.library.wall / max(1e-9, self.wall - self.startup)


def cli_script() -> Path:
    """``dumpling-async`` next to this interpreter (the virtualenv's script)."""
    return Path(sys.executable).parent / "dumpling-async"


def _environment(loop: str | None) -> dict[str, str]:
    env = dict(os.environ, DUMPLINGAI_API_KEY=API_KEY)
    env.pop("DUMPLINGAI_EVENT_LOOP", None)
    if loop is not None:
        env["DUMPLINGAI_EVENT_LOOP"] = loop
    return env


def _run_cli(url: str, source: Path, output: Path, loop: str | None) -> float:
    """Run the command line once; its wall time (raises if it failed)."""
    command = [str(cli_script()), "profiles", str(source), "-o", str(output)]
    command += ["--base-url", url, "--concurrency", str(CONCURRENCY), "-q", "--overwrite"]
    started = time.perf_counter()
    done = subprocess.run(
        command, env=_environment(loop), capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"dumpling-async exited {done.returncode}: {done.stderr[-2000:]}")
    return wall


def measure_cli(server: ServerProcess, handles: list[str], loop: str | None) -> CliRun:
    """One command-line run (*loop* "asyncio", or None for its default) and its peer."""
    in_process = loop or ("uvloop" if has_uvloop() else "asyncio")
    library = measure(server, run_client_iter, handles, in_process)
    with tempfile.TemporaryDirectory(prefix="overhead-cli-") as tmp:
        source, empty, output = Path(tmp, "in.txt"), Path(tmp, "empty.txt"), Path(tmp, "o.jsonl")
        source.write_text("".join(f"{handle}\n" for handle in handles), encoding="utf-8")
        empty.write_text("", encoding="utf-8")
        server.reset()
        wall = _run_cli(server.url, source, output, loop)
        with output.open("rb") as lines:
            written = sum(1 for line in lines if b'"ok":true' in line)
        check_server(server, len(handles), written)
        startup = _run_cli(server.url, empty, Path(tmp, "empty.jsonl"), loop)
    label = f"{in_process}" + ("" if loop else " (its default)")
    return CliRun(label, len(handles), wall, startup, library)
