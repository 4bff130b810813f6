"""Progress bars that stay readable wherever the output goes.

On a terminal, progress() is tqdm's bar. Written to a file or a pipe (a CI log, `| tee`,
nohup), a bar redrawn with carriage returns becomes one endless line; there, progress()
prints a plain line instead at every LOG_PERCENT of the work and at least every LOG_SECONDS,
and a last line when it ends. Both take the same calls: iteration, set_postfix(), close().
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

LOG_PERCENT = 10  # a line at every 10 % of the work,
LOG_GAP = 2.0  # but not more often than every 2 s (fast work: only the last line),
LOG_SECONDS = 10.0  # and at least one every 10 s


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


class LogProgress:
    """tqdm's calls, written as whole lines: '<desc>: 40/100 (40 %), 12.3 step/s, loss=0.5'."""

    def __init__(
        self,
        iterable: Iterable[T],
        desc: str,
        unit: str,
        total: int | None = None,
        file: IO[str] | None = None,
        percent: int = LOG_PERCENT,
        seconds: float = LOG_SECONDS,
    ) -> None:
        self.iterable = iterable
        self.desc, self.unit = desc, unit
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.file = file
        self.percent, self.seconds = percent, seconds
        self.n = 0
        self.postfix = ""
        self.t0 = self.last = time.monotonic()
        self.next_percent = percent
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        due = now - self.last >= self.seconds
        if self.total:
            pct = 100 * self.n / self.total
            if pct >= self.next_percent and self.n < self.total:
                due = due or now - self.last >= LOG_GAP
                while self.next_percent <= pct:
                    self.next_percent += self.percent
        if due:
            self._line()

    def set_postfix(
        self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kw: Any
    ) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def _line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.t0
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f} %)" if self.total else f"{self.n}"
        rate = f", {self.n / elapsed:.1f} {self.unit}/s" if elapsed > 0 and self.n else ""
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done}{rate}, {elapsed:.0f} s{tail}", file=self.file or sys.stderr, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line()


def progress(
    iterable: Iterable[T],
    desc: str,
    unit: str = "it",
    total: int | None = None,
    disable: bool = False,
    leave: bool = True,
) -> Any:
    """A progress bar over iterable: tqdm on a terminal, LogProgress lines elsewhere."""
    if disable or is_terminal():
        return tqdm(
            iterable, desc=desc, unit=unit, total=total, disable=disable, leave=leave, dynamic_ncols=True
        )
    return LogProgress(iterable, desc, unit, total)
