"""`marsbench serve` in its own process, as a user runs it: what the kill/resume and SIGTERM tests
share (free loopback ports, start-up, the job's state, stopping)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class ServeProcess:
    """One `python -m marsbench.cli.main serve` over `data_dir`; its output goes to `log_path`."""

    def __init__(
        self, data_dir: Path, log_path: Path, *, index_batch: int, in_flight: int, encoder_batch: int
    ) -> None:
        ports = free_ports(4)  # the trainer too: its default port (8004) may be taken here
        env = {
            **os.environ,
            "MARSBENCH_INDEX_BATCH_SIZE": str(index_batch),
            "MARSBENCH_INDEX_IN_FLIGHT": str(in_flight),
            "MARSBENCH_ENCODER_MAX_BATCH_SIZE": str(encoder_batch),
        }
        command = [sys.executable, "-m", "marsbench.cli.main", "serve", "--data-dir", str(data_dir)]
        flags = ("--encoder-port", "--indexer-port", "--evaluator-port", "--trainer-port")
        for flag, port in zip(flags, ports, strict=True):
            command += [flag, str(port)]
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.indexer = f"http://127.0.0.1:{ports[1]}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited early:\n{self.output()}"
            try:
                if httpx.get(f"{self.indexer}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"serve did not come up in {timeout_s} s:\n{self.output()}")

    def job(self, job_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.indexer}/v1/jobs/{job_id}", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it is still running after `timeout_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
