"""Argon2 on one low-priority thread per process, so signing in yields the CPU to clicks and conversions.

A hash takes tens of milliseconds of CPU on every lane it is given, on purpose. On a small machine the
portal's workers share their cores with the redirector and the conversion API; at normal priority a few
people signing in at once took those cores from them. Hashes are run on one thread per process whose
nice value is raised, so the scheduler prefers every other request's thread; and one at a time per
process, so a flood of sign-ins queues instead of taking every core.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher

NICENESS = 10


def _lower_priority() -> None:
    # On Linux the nice value belongs to the thread, and Argon2's lane threads inherit it.
    # Where threads have no priority of their own, hashing still runs one at a time.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


class BackgroundHasher(PasswordHasher):
    """A PasswordHasher whose hash and verify run on the process's low-priority hashing thread."""

    _executor: ThreadPoolExecutor | None = None
    _executor_pid: int | None = None
    _lock = threading.Lock()

    @classmethod
    def _pool(cls) -> ThreadPoolExecutor:
        # Made on first use in each process: a thread does not survive the fork of a server's workers.
        with cls._lock:
            if cls._executor is None or cls._executor_pid != os.getpid():
                cls._executor = ThreadPoolExecutor(1, "argon2", initializer=_lower_priority)
                cls._executor_pid = os.getpid()
            return cls._executor

    def hash(self, password, *, salt=None) -> str:
        return self._pool().submit(super().hash, password, salt=salt).result()

    def verify(self, hash, password):
        return self._pool().submit(super().verify, hash, password).result()
