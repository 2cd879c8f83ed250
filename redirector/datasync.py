"""fdatasync for an event loop: the loop asks for a sync and is told, on the loop, when it is done.

The RSGI front door makes every batch of clicks durable before it answers. Waiting for fdatasync
in a thread hands each batch to that thread and back: a futex wake one way, a self-pipe write the
other, and the GIL taken in turn by a thread that needs it for a moment and a loop that is busy.
On a machine with few cores those hand-offs can cost more than the sync itself.

Linux's native AIO accepts an fdatasync of any file (IOCB_CMD_FDSYNC, since Linux 4.18), runs it in
the kernel and signals an eventfd when it is done; the loop watches the eventfd like a socket, so no
Python thread takes part. The system calls are made through ctypes: the Python binding
(python-libaio) needs the libaio C library installed, which a fresh machine may not have.

Where AIO is missing (another OS or architecture, an old kernel, a sandbox that refuses the calls),
``open_data_sync`` falls back to ``ThreadSync``: the same interface, the sync made in one thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import platform
from collections.abc import Callable
from concurrent.futures import Executor

log = logging.getLogger(__name__)

Done = Callable[[OSError | None], None]

# System call numbers of io_setup, io_destroy, io_getevents and io_submit.
SYSCALLS = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
IOCB_CMD_FDSYNC = 3
IOCB_FLAG_RESFD = 1  # signal completions on the eventfd in aio_resfd
MAX_EVENTS = 8  # a loop has one sync in flight; a few more never hurt


class _IOCB(ctypes.Structure):
    """struct iocb from <linux/aio_abi.h> (little-endian layout)."""

    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _Event(ctypes.Structure):
    """struct io_event: ``res`` is fdatasync's result, 0 or a negative errno."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class AioSync:
    """fdatasync through Linux AIO, completions read on ``loop`` from an eventfd."""

    def __init__(self, loop: asyncio.AbstractEventLoop, libc: ctypes.CDLL, calls: tuple[int, int, int, int]) -> None:
        self.loop = loop
        self._libc = libc
        self._setup, self._destroy, self._getevents, self._submit = calls
        self._context = ctypes.c_ulong(0)
        self._call(self._setup, ctypes.c_uint(MAX_EVENTS), ctypes.byref(self._context))
        self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._iocb = _IOCB()
        self._iocbs = (ctypes.POINTER(_IOCB) * 1)(ctypes.pointer(self._iocb))
        self._events = (_Event * MAX_EVENTS)()
        self._no_wait = (ctypes.c_long * 2)(0, 0)
        self._waiting: dict[int, Done] = {}
        self._next_tag = 0
        loop.add_reader(self._eventfd, self._completed)

    def _call(self, number: int, *args) -> int:
        result = self._libc.syscall(ctypes.c_long(number), *args)
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    def submit(self, fd: int, done: Done) -> None:
        """Start an fdatasync of ``fd`` (kept open until ``done``); raise OSError if the kernel refuses it."""
        self._next_tag += 1
        iocb = self._iocb
        ctypes.memset(ctypes.byref(iocb), 0, ctypes.sizeof(iocb))
        iocb.aio_data = self._next_tag
        iocb.aio_lio_opcode = IOCB_CMD_FDSYNC
        iocb.aio_fildes = fd
        iocb.aio_flags = IOCB_FLAG_RESFD
        iocb.aio_resfd = self._eventfd
        if self._call(self._submit, self._context, ctypes.c_long(1), self._iocbs) != 1:
            raise OSError(errno.EAGAIN, "io_submit took no request")
        self._waiting[self._next_tag] = done

    def _completed(self) -> None:
        try:
            os.eventfd_read(self._eventfd)
        except BlockingIOError:
            return
        while self._waiting:
            count = self._call(
                self._getevents, self._context, ctypes.c_long(0), ctypes.c_long(MAX_EVENTS), self._events, self._no_wait
            )
            if not count:
                return
            for event in self._events[:count]:
                done = self._waiting.pop(event.data, None)
                if done is not None:
                    done(None if event.res >= 0 else OSError(-event.res, os.strerror(-event.res)))

    def close(self) -> None:
        """Stop watching the eventfd and release the AIO context (waiting for a sync in flight)."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self._eventfd)
        self._libc.syscall(ctypes.c_long(self._destroy), self._context)
        os.close(self._eventfd)


class ThreadSync:
    """fdatasync in an executor's thread, the result handed back on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: Executor) -> None:
        self.loop = loop
        self.executor = executor

    def submit(self, fd: int, done: Done) -> None:
        synced = self.loop.run_in_executor(self.executor, os.fdatasync, fd)
        synced.add_done_callback(lambda future: done(future.exception()))

    def close(self) -> None:
        """Nothing of its own to release: the executor is its owner's."""


def open_data_sync(loop: asyncio.AbstractEventLoop, executor: Executor) -> AioSync | ThreadSync:
    """Linux AIO where this machine offers it, else a thread."""
    calls = SYSCALLS.get(platform.machine())
    if calls is not None and hasattr(os, "eventfd"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            return AioSync(loop, libc, calls)
        except (OSError, AttributeError):
            log.info("Linux AIO is not available here; click log syncs run in a thread", exc_info=True)
    return ThreadSync(loop, executor)
