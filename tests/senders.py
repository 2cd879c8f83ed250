"""Senders as production runs them, for the crash tests: `flask send-mail --loop` or `flask send-webhooks --loop`
in a process group of their own, on the test's database, killed with SIGKILL when the test says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.servers import kill_group

ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 45  # bound on every wait; a passing run takes a few seconds


class Sender:
    """``flask --app wsgi <command> --loop --every 0.2`` on ``database_uri`` with ``settings`` in its environment.

    Variables of the test's own environment that start with one of ``dropped`` are not passed on, so the
    sender sees only the settings the test gives it.
    """

    def __init__(
        self,
        command: str,
        name: str,
        database_uri: str,
        instance: Path,
        settings: dict[str, str],
        dropped: tuple[str, ...] = (),
    ) -> None:
        instance.mkdir()
        self.name = name
        self.log = instance / "sender.log"
        inherited = {key: value for key, value in os.environ.items() if not dropped or not key.startswith(dropped)}
        environment = {
            **inherited,
            "CLICKTRAIL_ENV": "development",
            "CLICKTRAIL_INSTANCE": str(instance),
            "DATABASE_URL": database_uri,
            "SECRET_KEY": "sender-crash-test",
            **settings,
            "PYTHONUNBUFFERED": "1",  # its log survives SIGKILL
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", command, "--loop", "--every", "0.2"],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return f"--- {self.name} sender ---\n{self.log.read_text(errors='replace')[-3000:]}"

    def sent(self) -> int:
        """How many its rounds reported sent."""
        return sum(int(count) for count in re.findall(r"^sent (\d+),", self.log.read_text(), re.MULTILINE))

    def kill(self) -> None:
        """SIGKILL the process group: no handler runs, no transaction is ended, no connection is closed politely."""
        kill_group(self.process)


def eventually(check: Callable[[], bool], what: str, *senders: Sender, timeout: float = WAIT_SECONDS) -> None:
    """Wait until ``check()`` holds; fail at once if a sender process died, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        dead = [sender for sender in senders if sender.process.poll() is not None]
        logs = "\n".join(sender.output() for sender in senders)
        assert not dead, f"{what}: the {dead[0].name} sender exited ({dead[0].process.returncode})\n{logs}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{logs}"
        time.sleep(0.05)
