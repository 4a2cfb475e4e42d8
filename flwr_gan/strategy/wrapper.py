"""A Strategy that wraps another and delegates what it does not change.

The base of this package's strategy wrappers (:class:`flwr_gan.compress.AdaComp`,
:class:`flwr_gan.privacy.strategy.DPGuard`), in the manner of Flower's own
``DifferentialPrivacy*`` wrappers: a subclass overrides ``configure_train`` /
``aggregate_train`` (or anything else); evaluation and the summary go to the
wrapped strategy, and attributes the wrapper does not have (``history``,
``rounds_done``, ``clipping_norm``) are read through the chain of wrapped
strategies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class WrapperStrategy(Strategy):
    """Delegate every Strategy hook to ``strategy``.

    Parameters
    ----------
    strategy : Strategy
        The wrapped strategy.
    """

    def __init__(self, strategy: Strategy) -> None:
        super().__init__()
        self.strategy = strategy

    def __getattr__(self, name: str) -> Any:
        """Read an attribute this wrapper lacks from the wrapped strategies, innermost last."""
        inner = self.__dict__.get("strategy")
        while inner is not None and not name.startswith("_"):
            if hasattr(inner, name):
                return getattr(inner, name)
            inner = getattr(inner, "strategy", None)
        raise AttributeError(name)

    def summary(self) -> None:
        """Log the wrapped strategy's summary."""
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Delegate to the wrapped strategy."""
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Delegate to the wrapped strategy."""
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Delegate to the wrapped strategy."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """Delegate to the wrapped strategy."""
        return self.strategy.aggregate_evaluate(server_round, replies)


__all__ = ["WrapperStrategy"]
