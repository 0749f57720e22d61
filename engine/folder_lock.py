"""One run a folder. A run that writes into a folder (training's checkpoints, a video's detections and events)
holds a lock on it, so that a second run started into the same folder stops at once with an error, instead of
replacing the first's checkpoint under it (both write ``last.pth`` by way of the same temporary file, and a
starting run removes the temporary files it finds) or interleaving their lines.

The lock is the operating system's, on ``<folder>/.lock`` (``flock``; ``msvcrt.locking`` on Windows): it goes
with the process however the process ends, ``SIGKILL`` and power cuts included, so there is never a stale lock to
remove by hand. The file holds the holder's process id, for the error."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .annotate import check_writable

LOCK_NAME = ".lock"

try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

except ImportError:  # Windows
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


class FolderInUseError(OSError):
    """Another process holds the folder."""


@contextlib.contextmanager
def folder_lock(folder: Path, flag: str = "--output-dir") -> Iterator[Path]:
    """Hold ``folder`` (made if missing, and checked writable) for the block and yield it; :class:`FolderInUseError`
    naming ``flag``, the folder and the holder when another process holds it."""
    check_writable(folder)
    with open(folder / LOCK_NAME, "a+") as file:
        try:
            file.seek(0)
            _lock(file.fileno())
        except OSError:
            raise FolderInUseError(
                f"{flag} {folder} is in use by another run (process {_holder(file)}); give each run a folder of its own"
            ) from None
        file.truncate(0)
        file.write(f"{os.getpid()}\n")
        file.flush()
        yield folder


def _holder(file: IO[str]) -> str:
    """The process id the holder wrote in the lock file, or "unknown" (not yet written, or unreadable)."""
    try:
        file.seek(0)
        return file.read().strip() or "unknown"
    except OSError:
        return "unknown"
