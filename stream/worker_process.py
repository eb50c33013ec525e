"""Run ``vitalstream worker`` as a child process (demo, validation, end-to-end tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from stream.services import ServiceError, free_port


class WorkerProcess:
    """A worker subprocess with its own environment, log file and web port.

    ``wait_ready`` returns once the worker's agents have joined the consumer group and
    been assigned partitions (its ``/stats/`` page reports ``"assigned": true``).
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, name: str = "worker",
                 cwd: Path | None = None) -> None:
        """``cwd``: the directory the worker runs in (its ``stream`` package is imported from
        there first; the capacity bench runs an older checkout's workers so)."""
        self.log_path = log_path
        self.cwd = cwd
        self.name = name
        self.web_port = int(env.get("VITALSTREAM_WORKER_WEB_PORT") or free_port())
        self.env = {**os.environ, **env, "VITALSTREAM_WORKER_WEB_PORT": str(self.web_port)}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream.cli.main", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
            )
        return self

    def stats(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/stats/", timeout=1) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited during start-up; see {self.log_path}:\n{self.log_tail()}")
            stats = self.stats()
            if stats and stats.get("assigned"):
                return
            time.sleep(0.3)
        raise ServiceError(f"{self.name} not ready after {timeout_s:.0f} s; see {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash would: no graceful leave, no final commit."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
