"""Run ``python -m infra.local`` as a subprocess (for tests): start, wait for health, stop cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from .client import StackClient, wait_healthy

__all__ = ["StackProcess", "StackStartError", "free_port"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class StackStartError(RuntimeError):
    """The stack did not become healthy; the message ends with its output."""


def free_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StackProcess:
    """``python -m infra.local`` on free ports; its stdout and stderr go to a log file.

    The stack sees this process's environment minus any ``CROSSROUTE_*`` variables (a developer's
    ``CROSSROUTE_TENANTS_FILE`` must not leak into tests), plus ``env``.
    """

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        module: str = "infra.local",
    ) -> None:
        """``module``: what ``python -m`` runs (another entry point wrapping ``infra.local``, say)."""
        self.port = free_port()
        self.aws_port = free_port()
        self.extra_env = dict(env or {})
        self.module = module
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="crossroute-local-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process, without waiting for it to be healthy (:meth:`start` waits)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CROSSROUTE_")}
        env = {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            "CROSSROUTE_PORT": str(self.port),
            "CROSSROUTE_AWS_PORT": str(self.aws_port),
            **self.extra_env,
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self.proc

    def start(self, timeout: float = 30) -> StackClient:
        """Start the stack, wait for ``/_local/health``; :class:`StackStartError` carries its output."""
        proc = self.launch()
        try:
            wait_healthy(self.base_url, timeout, alive=lambda: proc.poll() is None)
            client = StackClient(self.base_url)
            client.process = self
            return client
        except Exception as exc:
            self.stop()
            raise StackStartError(
                f"local stack did not start: {exc}\n--- output ---\n{self.output()}"
            ) from None

    def output(self) -> str:
        """Everything the stack printed so far (handler logs included)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> int | None:
        """SIGINT (like Ctrl-C), then SIGKILL after ``timeout``; returns the exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code
