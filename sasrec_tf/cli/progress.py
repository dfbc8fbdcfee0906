"""Progress of the CLI's long steps (loading a log, evaluation, export, recommendations).

On a terminal, Keras' ``Progbar`` under a title line; in a log (stdout not a terminal), one line
per step when it ends, never a redrawn bar. Keras is imported only when a bar is drawn, so a
command that never shows one (help, argument errors, ``info``) imports no TensorFlow.

The library reports progress through plain callables (``progress(done, total)``,
``progress(step, done, total)``); :class:`Progress` and :class:`Steps` are such sinks.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Sequence, TextIO

__all__ = ["Progress", "Steps", "evaluation_progress", "is_terminal"]


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stdout, where Keras draws its bars) is a terminal."""
    stream = sys.stdout if stream is None else stream
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class Progress:
    """``done`` of ``total`` units of one step (users ranked, users recommended for).

    Call it as ``progress(done, total)`` as often as the library likes. On a terminal ``title`` is
    printed at once and the first call starts a ``keras.utils.Progbar`` that reaches ``total``; off a terminal
    nothing is printed until :meth:`close` (or ``done == total``), which prints one line:
    ``title: total units in S s``.

    Args:
      title: what the step does, e.g. ``"evaluating valid, full ranking"``.
      unit: the singular noun of what is counted (``"user"``).
      terminal: draw a bar; default: whether stdout is a terminal.
      stream: where the line goes off a terminal (default: stdout).
    """

    def __init__(self, title: str, unit: str, *, terminal: bool | None = None, stream: TextIO | None = None):
        self.title, self.unit = title, unit
        self.terminal = is_terminal() if terminal is None else terminal
        self.stream = stream
        self.done = self.total = 0
        self._bar = None
        self._started = time.perf_counter()
        self._closed = False
        if self.terminal:  # at once: the first batch may take a while
            print(f"{self.title}:", flush=True)

    def __call__(self, done: int, total: int) -> None:
        if self._closed:  # reported complete already (a caller may repeat the last call)
            return
        self.done, self.total = int(done), int(total)
        if self.terminal:
            if self._bar is None:
                from sasrec_tf._compat import keras

                self._bar = keras.utils.Progbar(max(self.total, 1), unit_name=self.unit)
            self._bar.update(self.done)
            if self.done >= self.total:
                self._closed = True
        elif self.done >= self.total:
            self.close()

    def close(self, note: str = "") -> None:
        """The step ended: off a terminal, its one line (once); ``note`` is added to it."""
        if self._closed:
            return
        self._closed = True
        if self.terminal:
            if self._bar is not None:
                self._bar.update(self.done, finalize=True)
            return
        seconds = time.perf_counter() - self._started
        plural = "" if self.total == 1 else "s"
        print(f"{self.title}: {self.done}/{self.total} {self.unit}{plural} in {seconds:.1f} s{note}",
              file=self.stream or sys.stdout, flush=True)


class Steps:
    """A step made of ``total`` named sub-steps (read, filter, sequences), reported as
    ``progress(step, done, total)`` when each one ends.

    On a terminal: ``title`` (with the sub-steps' ``names``) and a ``Progbar`` counting them, drawn at once. Off a
    terminal: one line per finished sub-step, ``title: step (done/total, S s)``, S the seconds it took.
    """

    def __init__(self, title: str, total: int, *, names: Sequence[str] = (), terminal: bool | None = None,
                 stream: TextIO | None = None):
        self.title = title
        self.terminal = is_terminal() if terminal is None else terminal
        self.stream = stream
        self.steps: list[str] = []
        self._bar = None
        self._started = time.perf_counter()
        if self.terminal:
            from sasrec_tf._compat import keras

            print(f"{title} ({', '.join(names)}):" if names else f"{title}:", flush=True)
            self._bar = keras.utils.Progbar(max(int(total), 1), unit_name="step")
            self._bar.update(0)

    def __call__(self, step: str, done: int, total: int) -> None:
        self.steps.append(step)
        if self._bar is not None:
            self._bar.update(int(done))
            return
        now = time.perf_counter()
        seconds, self._started = now - self._started, now
        print(f"{self.title}: {step} ({done}/{total}, {seconds:.1f} s)", file=self.stream or sys.stdout, flush=True)


def evaluation_progress(stage: str, *, terminal: bool | None = None,
                        stream: TextIO | None = None) -> Callable[[str, int, int], None]:
    """A sink for :func:`sasrec_tf.evaluation.evaluate`'s ``progress(protocol, done, total)``: one
    :class:`Progress` per protocol, titled ``evaluating STAGE, PROTOCOL ranking``."""
    bars: dict[str, Progress] = {}

    def progress(protocol: str, done: int, total: int) -> None:
        if protocol not in bars:
            bars[protocol] = Progress(f"evaluating {stage}, {protocol} ranking", "user", terminal=terminal,
                                      stream=stream)
        bars[protocol](done, total)

    return progress
