"""Stopping a training run on a signal without losing it: SIGINT (Ctrl-C) or SIGTERM (``kill``, a scheduler, a
container stop) asks the run to stop after the step in progress, so that it writes ``last.pth`` with its exact
state; a second signal stops at once. A signal ignored when the run starts stays ignored, as Python leaves it: a
shell script's background job ignores SIGINT, so that Ctrl-C on the script does not reach it.

A service manager or a cluster's scheduler signals every process of the run, its DataLoader workers too: once a
stop is asked, a worker ended by the signal is expected, and PyTorch's report of it (an exception raised anywhere,
mid-step) is turned off until the run ends."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from tqdm import tqdm

from cli import ignore_children, raise_terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """While entered (in the main thread), the first SIGINT or SIGTERM (of those not ignored) is remembered in
    :attr:`signal` and the second raises ``KeyboardInterrupt``; the handlers before are restored on exit."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self.previous: dict[int, object] = {}
        self.children_handler: object = None  # SIGCHLD's, where there is one: PyTorch's report of dead workers

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            ignored = [s for s in SIGNALS if signal.getsignal(s) == signal.SIG_IGN]
            self.previous = {s: signal.signal(s, self.handle) for s in SIGNALS if s not in ignored}
            self.children_handler = signal.getsignal(signal.SIGCHLD) if hasattr(signal, "SIGCHLD") else None
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        if self.children_handler is not None:
            signal.signal(signal.SIGCHLD, self.children_handler)

    def handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            if number == signal.SIGTERM:
                raise_terminated(number, frame)
            raise KeyboardInterrupt(f"a second {signal.Signals(number).name}")
        self.signal = signal.Signals(number)
        if self.children_handler is not None:
            signal.signal(signal.SIGCHLD, ignore_children)
        tqdm.write(f"{self.signal.name}: stopping after this step to write last.pth (a second signal stops at once)")
