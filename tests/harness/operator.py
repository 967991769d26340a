"""The operator as a real process (`python -m glrt_operator run`), as it runs in its pod: it can be killed with
SIGKILL mid-flight, restarted, and everything it printed can be read back (and scanned for secrets)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.harness.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]

# Short timers so that resync, back-off and recovery happen within a test's patience.
TEST_ENV = {
    "GLRT_RESYNC_INTERVAL": "3",
    "GLRT_BATCH_READ_TTL": "2",  # a batch read (GraphQL) answers resyncs for 2 s
    "GLRT_ERROR_BACKOFF": "0.5",
    "GLRT_ERROR_BACKOFF_MAX": "4",
    "GLRT_WATCH_SERVER_TIMEOUT": "60",
}


class OperatorProcess:
    def __init__(self, kubeconfig: Path, namespace: str, log_dir: Path, env: dict[str, str] | None = None):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_dir = log_dir
        # Its own metrics port: operators of parallel test runs on this machine must not collide on a fixed one.
        self.metrics_port = free_port()
        self.env = {**TEST_ENV, "GLRT_METRICS_PORT": str(self.metrics_port), **(env or {})}
        # `--verbose`: start() waits for Kopf's debug line that the watch streams are open.
        self.args = ["run", "--namespace", namespace, "--verbose"]
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.logs: list[Path] = []  # one file per start, all kept for the secret scan

    def start(self, until: bytes = b"Starting the watch-stream") -> OperatorProcess:
        """Start it and wait for `until` in its log: by default Kopf's line that the watch streams are open (from
        then on no event is missed); a standby replica (--leader-election) logs b"standing by" instead."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        log = self.log_dir / f"operator-{self.namespace}-{self.runs}.log"
        self.logs.append(log)
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "glrt_operator", *self.args],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self._started(log, until), timeout=60, interval=0.1, message="operator start")
        return self

    def _started(self, log: Path, until: bytes) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"operator exited with {self.process.returncode}:\n{log.read_text()[-3000:]}")
        return until in log.read_bytes()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last patch, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def scrape(self) -> str:
        """The operator's Prometheus exposition (GET /metrics)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text: str = response.read().decode()
        return text

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
