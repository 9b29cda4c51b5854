"""Feedback during the slow one-time steps: unpacking an archive, decoding a dataset into the cache.

Each step says what it reads: a line when it starts ("decoding cifar10 (image folder) from
/data/cifar10-jpeg.tar.gz ...") and a line when it ends (with the time taken and the count of
files). The lines go to ``log`` when one is given (a callable taking a string, e.g. the CLI's
printer), else to the ``spiketandem.data`` logger at INFO level (silent unless logging is
configured, e.g. ``logging.basicConfig(level=logging.INFO)``). On a terminal (stderr a TTY) a tqdm
bar on stderr also counts the files while the step runs; without ``log`` the two lines are then
written to stderr too, so an interactive user always sees which file is read. Nothing is printed
when stderr is not a terminal and no ``log`` is given, so test runs and scripts stay quiet.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LogFn = Callable[[str], None]
logger = logging.getLogger("spiketandem.data")


class Step:
    """One running step: :meth:`add` grows the expected total (and names the unit counted),
    :meth:`advance` counts work done."""

    def __init__(self, bar=None, unit: str = "file") -> None:
        self._bar = bar
        self.unit = unit
        self.total = 0
        self.done = 0

    def add(self, n: int, unit: str | None = None) -> None:
        self.total += n
        if unit:
            self.unit = unit
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.unit = self.unit
            self._bar.refresh()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)


class _NullStep(Step):
    def add(self, n: int, unit: str | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


NULL_STEP: Step = _NullStep()
"""A step that reports nothing: the default of every decoder called directly."""


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class Feedback:
    """Where the lines and bars of the one-time steps go (see the module docstring).

    ``bar``: True or False forces the tqdm bar on or off; None (the default) shows it when stderr
    is a terminal."""

    def __init__(self, log: LogFn | None = None, bar: bool | None = None) -> None:
        self._log = log
        self._bar = _stderr_is_terminal() if bar is None else bool(bar)

    def line(self, text: str) -> None:
        if self._log is not None:
            self._log(text)
        elif self._bar:
            from tqdm import tqdm
            tqdm.write(text, file=sys.stderr)
        else:
            logger.info(text)

    @contextmanager
    def step(self, description: str, label: str, unit: str = "file") -> Iterator[Step]:
        """Announce ``description``, show a bar labelled ``label`` while the body runs, and on success
        say how long it took and how many ``unit`` were done. A failing step prints no end line."""
        self.line(description)
        bar = None
        if self._bar:
            from tqdm import tqdm
            bar = tqdm(desc=label, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
        step = Step(bar, unit)
        start = time.perf_counter()
        try:
            yield step
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        count = f", {step.done:,} {step.unit}{'' if step.done == 1 else 's'}" if step.done else ""
        self.line(f"{label}: done in {seconds:.1f} s{count}")


QUIET = Feedback(log=lambda _text: None, bar=False)
