"""Stand-in for a kill -9 right after a checkpoint (the resume tests of every family)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr_gan.runtime.experiment import Experiment


class KilledError(Exception):
    """Raised right after the checkpoint of the chosen step was written."""


def run_until_killed(exp: Experiment, crash_at: int,
                     run: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Call ``run()``; die right after ``exp`` writes the checkpoint of ``crash_at`` (0: never).

    Returns the run's records, or ``[]`` when it was killed. The progress bar is closed
    either way.
    """
    save = exp.save_checkpoint

    def save_then_die(step: int, state: Any) -> Path:
        path = save(step, state)
        if step == crash_at:
            raise KilledError
        return path

    exp.save_checkpoint = save_then_die  # type: ignore[method-assign]
    try:
        return run()
    except KilledError:
        return []
    finally:
        exp.close()
