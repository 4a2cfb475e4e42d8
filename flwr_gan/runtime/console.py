"""What a run prints: logging set-up and progress that stays readable in a file.

On a terminal, progress is a tqdm bar. Written to a file or a CI log (stderr is
not a TTY), a bar would be a wall of carriage-return frames, so progress becomes
plain lines instead: one per evaluation and at least one per tenth of the run,
each with the count, the latest FID, the elapsed time and the ETA (from the pace
since the first record, so one-time set-up such as training the FID classifier
does not inflate it).

Third-party chatter is kept out unless ``--verbose``: Flower's notices that
only concern its own API choices (``run_simulation`` is deprecated, federated
evaluation is off: both are deliberate here), Ray's accelerator tip, and the
INFO records of alembic and matplotlib. Flower's own console handler is
replaced by ours so each message is printed once, without colour codes.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Mapping
from typing import IO, Any

#: Flower messages that are expected in every run of this package (not user actionable).
_FLOWER_NOISE = (
    "DEPRECATED FEATURE: The `run_simulation` function is deprecated",
    "fraction_evaluate is set to 0.0",
    "This is a deprecated feature",
)
#: Third-party loggers that are silenced below WARNING unless verbose.
_QUIET = ("alembic", "matplotlib", "PIL", "filelock", "urllib3", "ray")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class _DropKnownNoise(logging.Filter):
    """Drops Flower's messages about choices this package makes on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(part in message for part in _FLOWER_NOISE)


def configure_logging(verbose: bool) -> None:
    """Set up logging for a command: warnings only (one line each), or everything.

    Parameters
    ----------
    verbose : bool
        Debug level, third-party INFO records and Flower's notices included.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format=LOG_FORMAT, force=True)
    flwr_logger = logging.getLogger("flwr")
    for handler in list(flwr_logger.handlers):  # Flower's coloured console handler
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            flwr_logger.removeHandler(handler)
    flwr_logger.propagate = True
    for old in [f for f in flwr_logger.filters if isinstance(f, _DropKnownNoise)]:
        flwr_logger.removeFilter(old)  # a second call in one process starts clean
    if verbose:
        flwr_logger.setLevel(logging.DEBUG)
        return
    flwr_logger.setLevel(logging.WARNING)
    flwr_logger.addFilter(_DropKnownNoise())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray",
                            category=FutureWarning)


class Progress:
    """A progress display: a tqdm bar on a terminal, plain lines in a file.

    Parameters
    ----------
    total : int
        Units of the whole run.
    initial : int
        Units already done (a resumed run).
    desc, unit : str
        What runs, and what it counts.
    enabled : bool
        ``False`` shows nothing.
    stream : file, optional
        Where to write (default ``sys.stderr``).
    interactive : bool, optional
        Force the bar (``True``) or the lines (``False``); default: whether
        ``stream`` is a TTY.
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str = "", unit: str = "round",
                 enabled: bool = True, stream: IO[str] | None = None,
                 interactive: bool | None = None) -> None:
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.started = time.perf_counter()
        self._initial = initial
        self._last_line = initial
        self._post: dict[str, str] = {}
        self._bar: Any = None
        self._rate_from: tuple[float, int] | None = None
        if enabled and interactive:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                             file=self.stream, dynamic_ncols=True)

    def update(self, n: int, post: Mapping[str, str] | None = None,
               *, milestone: bool = False) -> None:
        """Move to ``n`` units done; ``milestone`` (an evaluation) forces a line off-TTY."""
        if post:
            self._post = dict(post)
        if self._rate_from is None:  # the rate counts from the first update: set-up excluded
            self._rate_from = (time.perf_counter(), n)
        if self._bar is not None:
            self._bar.set_postfix(self._post, refresh=False)
            if n > self._bar.n:
                self._bar.update(n - self._bar.n)
            else:
                self._bar.refresh()
        self.n = max(self.n, n)
        if not self.enabled or self.interactive:
            return
        tenth = max(1, self.total // 10)
        if milestone or self.n >= self.total or self.n - self._last_line >= tenth:
            if self.n != self._last_line or milestone:
                self._write_line()
            self._last_line = self.n

    def line(self) -> str:
        """Return the plain progress line of the current state."""
        now = time.perf_counter()
        elapsed = now - self.started
        since, n_then = self._rate_from or (self.started, self._initial)
        done = self.n - n_then
        left = self.total - self.n
        eta = f"{_clock((now - since) / done * left)}" if done > 0 else "?"
        width = len(str(self.total))
        post = "".join(f" {k} {v}" for k, v in self._post.items())
        return (f"{self.desc} {self.unit} {self.n:>{width}}/{self.total}{post} "
                f"elapsed {_clock(elapsed)} eta {eta}")

    def _write_line(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Close the bar (safe to call twice)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, sec = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{sec:02d}" if hours else f"{minutes}:{sec:02d}"
