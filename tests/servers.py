"""Servers the tests and the benchmarks start: a free loopback port, granian in a process group of its own, and
stopping that whole group (workers included) so that no port, file lock or database connection outlives it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRANIAN = str(Path(sys.executable).parent / "granian")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct child processes of pid (granian's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class Server:
    """granian serving ``target`` (the redirector by default) on a free loopback port, in its own process group.

    ``interface`` is "rsgi" (how production runs the redirector) or "wsgi" (how ``make run`` mounts it,
    beside the portal, as ``wsgi:app``).
    """

    def __init__(
        self,
        database_uri: str,
        instance: Path,
        workers: int = 2,
        interface: str = "rsgi",
        target: str = "wsgi:redirector",
        port: int | None = None,
        **env: str,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = instance / "server.log"
        environment = {
            **os.environ,
            "CLICKTRAIL_ENV": "development",
            "CLICKTRAIL_INSTANCE": str(instance),
            "DATABASE_URL": database_uri,
            "SECRET_KEY": "durability-test",
            "PUBLIC_BASE_URL": self.url,
            **env,
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    GRANIAN,
                    "--interface",
                    interface,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(workers),
                    "--blocking-threads",
                    "32" if interface == "wsgi" else "1",
                    "--no-ws",
                    "--respawn-failed-workers",
                    target,
                ],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def stop(self) -> None:
        """Kill every process of the server and wait until they are gone (and their file locks with them)."""
        kill_group(self.process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(self.process.pid):
            time.sleep(0.05)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start_new_session`` and everything in its group, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False
