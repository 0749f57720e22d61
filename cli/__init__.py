"""What every command-line tool here shares: the size syntax, help that shows defaults, one-line errors.

Every size on every command line is ``AxB`` (two integers joined by ``x``): ``--crop 320x320`` is
height x width; ``--resize 720x1280`` is short side x long side, which for the landscape road
pictures is height x width as well.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

# What a user's input or machine can cause: reported in one line. Anything else is a bug: a traceback.
USER_ERRORS = (OSError, ValueError, KeyError, EOFError)


class Stopped(Exception):
    """A run that stopped as asked (a signal) after keeping what it had done; the message says how to go on.
    ``status``: the exit status, 128 + the signal's number by convention."""

    def __init__(self, message: str, status: int = 130):
        super().__init__(message)
        self.status = status


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, a service manager) raised where Ctrl-C raises ``KeyboardInterrupt``, so
    that it unwinds the same way: ``finally`` blocks run and files are closed (a video finalised, not cut off)."""


def ignore_children(number: int, frame: object) -> None:
    """A SIGCHLD handler that does nothing: in place of PyTorch's, which raises an exception for a DataLoader worker
    ended by a signal (a Python handler, not SIG_DFL, so that a SIGCHLD already on its way is not reported either)."""


def raise_terminated(number: int, frame: object) -> None:
    # The process is ending: DataLoader workers ended by the same SIGTERM (a service manager signals them all) are
    # expected, and PyTorch's SIGCHLD handler would report each with a traceback after the one-line message
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, ignore_children)
    raise Terminated(signal.Signals(number).name)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While entered (in the main thread), SIGTERM raises :class:`Terminated` instead of ending the process at
    once; a SIGTERM that is ignored, or already handled, is left as it is. The handler before is restored."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def interruption(err: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped a run, in words, and its exit status: SIGTERM's 143 or Ctrl-C's 130."""
    if isinstance(err, Terminated):
        return "stopped by SIGTERM", 128 + signal.SIGTERM
    return f"interrupted{f' by {err}' if str(err) else ''}", 130


def parse_size(text: str) -> tuple[int, int]:
    """``"AxB"`` -> ``(A, B)``, both positive integers (argparse type)."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is written AxB, e.g. 720x1280; got {text!r}") from None
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"a size needs two positive integers, got {text!r}")
    return a, b


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = not (
            action.default is None or action.default is False or action.default == argparse.SUPPRESS or action.required
        )
        if shown and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def error_message(err: BaseException) -> str:
    """One line for a user's error: the message itself, or what a data loading worker reported."""
    text = str(err).strip()
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        text = f"{err.filename or ''}: no space left on the disk".lstrip(": ")
    if "Original Traceback" in text:  # raised again by a DataLoader worker: keep the worker's own message
        text = text.splitlines()[-1].split(": ", 1)[-1] + " (in a data loading worker)"
    return " ".join(text.split()) or type(err).__name__


def run(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace, prog: str) -> Any:
    """``main(args)``, with a user's error (:data:`USER_ERRORS`) printed as ``prog: error: ...`` and exit
    status 2 instead of a traceback, a run stopped by a signal (:class:`Stopped`), Ctrl-C or SIGTERM in one line,
    with status 128 + the signal. ``FCOS_DEBUG=1`` in the environment shows the traceback."""
    try:
        with sigterm_as_interrupt():
            return main(args)
    except Stopped as stop:
        print(f"{prog}: {stop}", file=sys.stderr)
        sys.exit(stop.status)
    except KeyboardInterrupt as err:
        if os.environ.get("FCOS_DEBUG"):
            raise
        what, status = interruption(err)
        print(f"{prog}: {what}", file=sys.stderr)
        sys.exit(status)
    except USER_ERRORS as err:
        if os.environ.get("FCOS_DEBUG"):
            raise
        print(f"{prog}: error: {error_message(err)}", file=sys.stderr)
        sys.exit(2)
