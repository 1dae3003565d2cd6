"""A one-line progress bar on stderr for the commands that take more than a few seconds.

Shown only when asked for and stderr is a terminal: under ``--json``, in a pipe or a log file a
command prints no bar (and its ``echo`` lines go to stderr as plain lines, as before).
"""

from __future__ import annotations

import sys
import time

WIDTH = 28  # characters of the bar itself


def wanted(quiet: bool = False, stream=None) -> bool:
    """Whether to draw a bar: not ``quiet`` (e.g. ``--json``) and ``stream`` (default stderr) is a terminal."""
    stream = stream or sys.stderr
    try:
        return not quiet and stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: no bar
        return False


def _fmt_s(s: float) -> str:
    s = int(max(0.0, s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Bar:
    """``[#####.....] done/total label: note  elapsed (ETA)`` redrawn in place on stderr.

    ``enabled=False`` draws nothing; :meth:`echo` then still prints its lines (so logs keep them).
    ``total`` may grow (:meth:`grow`) when the work turns out larger (extra measuring phases).
    """

    def __init__(self, total: int, label: str = "", enabled: bool = True, stream=None):
        self.total, self.done, self.label = max(0, int(total)), 0, label
        self.enabled, self.stream = enabled, stream or sys.stderr
        self.note, self.t0, self._width = "", time.monotonic(), 0

    def grow(self, n: int) -> None:
        self.total += max(0, int(n))
        self._draw()

    def update(self, done: int | None = None, advance: int = 0, note: str | None = None,
               total: int | None = None) -> None:
        """Set ``done`` (or add ``advance``), optionally a new ``total``, and the note shown after the label; redraw."""
        self.done = int(done) if done is not None else self.done + advance
        if total is not None:
            self.total = int(total)
        self.total = max(self.total, self.done)
        if note is not None:
            self.note = note
        self._draw()

    def echo(self, line: str) -> None:
        """Print ``line`` on stderr above the bar (or plainly when no bar is drawn)."""
        if self.enabled:
            self._clear()
        self.stream.write(line + "\n")
        self.stream.flush()
        self._draw()

    def _clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0

    def _draw(self) -> None:
        if not self.enabled:
            return
        el = time.monotonic() - self.t0
        frac = self.done / self.total if self.total else 0.0
        fill = int(WIDTH * min(1.0, frac))
        eta = f" ETA {_fmt_s(el / frac - el)}" if 0 < frac < 1 and el > 2 else ""
        head = f"{self.label}: " if self.label else ""
        note = f" {self.note}" if self.note else ""
        of = self.total if self.total else "?"  # total not known yet
        text = f"[{'#' * fill}{'.' * (WIDTH - fill)}] {self.done}/{of} {head}{_fmt_s(el)}{eta}{note}"
        text = text[:118]  # one line of a narrow terminal: a wrapped bar cannot be redrawn in place
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Leave the line clean (the bar disappears; results follow on stdout)."""
        if self.enabled:
            self._clear()
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> "Bar":
        self._draw()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
