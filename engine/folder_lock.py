"""One run a folder. A run that writes into a folder (training's checkpoints, a video's detections and events)
holds a lock on it, so that a second run started into the same folder stops at once with an error, instead of
replacing the first's checkpoint under it (both write ``last.pth`` by way of the same temporary file, and a
starting run removes the temporary files it finds) or interleaving their lines.

The lock is the operating system's, on ``<folder>/.lock`` (``flock``; ``msvcrt.locking`` on Windows): it goes
with the process however the process ends, ``SIGKILL`` and power cuts included (once its data loading workers,
which share it, have ended too), so there is never a stale lock to remove by hand. The file holds the holder's
process id, for the error. On a file system that cannot lock (some network and cluster mounts) the run goes on
unheld, with a warning."""

from __future__ import annotations

import contextlib
import errno
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .annotate import check_writable

LOCK_NAME = ".lock"
# what a lock held by another process raises: EAGAIN / EWOULDBLOCK (flock), EACCES / EDEADLOCK (Windows)
HELD_ERRORS = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}

try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows, where a lock left to the file's closing is released only after a while
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class FolderInUseError(OSError):
    """Another process holds the folder."""


@contextlib.contextmanager
def folder_lock(folder: Path, flag: str = "--output-dir") -> Iterator[Path]:
    """Hold ``folder`` (made if missing, and checked writable) for the block and yield it; :class:`FolderInUseError`
    naming ``flag``, the folder and the holder when another process holds it."""
    check_writable(folder)
    with open(folder / LOCK_NAME, "a+") as file:
        try:
            _lock(file.fileno())
        except OSError as err:
            if err.errno in HELD_ERRORS:
                raise FolderInUseError(
                    f"{flag} {folder} is in use by another run (process {_holder(file)}); give each run a folder of "
                    "its own"
                ) from None
            warnings.warn(
                f"{folder}: its file system cannot lock ({err.strerror}); nothing stops a second run into it",
                stacklevel=3,
            )
            yield folder
            return
        try:
            file.truncate(0)
            file.write(f"{os.getpid()}\n")
            file.flush()
            yield folder
        finally:
            _unlock(file.fileno())


def _holder(file: IO[str]) -> str:
    """The process id the holder wrote in the lock file, or "unknown" (not yet written, or unreadable)."""
    try:
        file.seek(0)
        return file.read().strip() or "unknown"
    except OSError:
        return "unknown"
