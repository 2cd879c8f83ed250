"""A PostgreSQL primary and a streaming replica made with pg_basebackup, as a site would run them, on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.servers import free_port


def server_binaries() -> Path | None:
    """The newest PostgreSQL server's bin directory from Debian's packages, if installed."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_basebackup"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


class Cluster:
    """One PostgreSQL server in a directory of its own."""

    def __init__(self, bindir: Path, directory: Path, port: int) -> None:
        self.bindir, self.directory, self.port = bindir, directory, port

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, *settings: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 " + " ".join(settings)
        log = self.directory / "server.log"
        as_owner([self.bindir / "pg_ctl", "-D", self.directory, "-l", log, "-w", "-t", "60", "-o", options, "start"])

    def stop(self) -> None:
        as_owner([self.bindir / "pg_ctl", "-D", self.directory, "-m", "fast", "-w", "stop"], check=False)

    def sql(self, statement: str, database: str = "postgres"):
        engine = create_engine(
            self.url(database).replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as conn:
                result = conn.execute(text(statement))
                return result.all() if result.returns_rows else []
        finally:
            engine.dispose()


class ReplicatedPair:
    """A primary and its streaming replica, in a fresh directory that the postgres user owns."""

    def __init__(self, bindir: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="clicktrail-replica-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.primary = Cluster(bindir, self.root / "primary", free_port())
        self.replica = Cluster(bindir, self.root / "replica", free_port())
        as_owner([bindir / "initdb", "-D", self.primary.directory, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        self.primary.start("-c wal_level=replica", "-c max_wal_senders=4", "-c fsync=off")
        as_owner(
            [
                bindir / "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                "postgres",
                "-D",
                self.replica.directory,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        self.replica.start("-c hot_standby=on", "-c fsync=off")

    def caught_up(self, timeout: float = 30) -> None:
        """Wait until the replica has replayed everything the primary has written."""
        (written,) = self.primary.sql("SELECT pg_current_wal_lsn()")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (behind,) = self.replica.sql(f"SELECT pg_wal_lsn_diff('{written}', pg_last_wal_replay_lsn())")[0]
            if behind is not None and behind <= 0:
                return
            time.sleep(0.05)
        raise AssertionError("the replica did not catch up")

    def close(self) -> None:
        self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def as_owner(command: list, check: bool = True) -> None:
    """Run a server program as the postgres user (initdb and the server refuse root)."""
    argv = [str(part) for part in command]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=check, cwd="/", capture_output=True, timeout=120)
