"""Files written whole or not at all: each is written to a temporary file beside it, which then replaces it in
one step. A full disk, a crash or a kill mid-write leaves the previous file as it was; an error or a signal that
Python sees also removes the temporary file (``SIGKILL`` leaves it for the next write to replace). The temporary
file reaches the disk before it replaces the old one, so a power cut (a roadside box) cannot leave an empty file
where the old one was."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """The temporary path (``<name>.tmp``) to write instead of ``path``. It replaces ``path`` when the block ends
    and is removed when the block or the replacement fails."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        yield tmp
        with open(tmp, "r+b") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomically(text: str, path: Path) -> None:
    """``text`` written to ``path`` by :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
