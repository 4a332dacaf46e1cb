"""Resuming a deployed run from its run directory (run-config ``resume-from``).

A coordinator that was stopped mid-run starts a new Flower run with
``resume-from=<run dir>``: the ServerApp loads the directory's latest checkpoint and trains
the remaining rounds, numbered after the checkpoint's round. The numbering matters for
privacy, not only for the logs: sites derive each round's noise from the rounds still
planned (``num-server-rounds - server-round + 1``), and their ledgers record the round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.run_dir import RunDirectory

__all__ = ["RoundOffset", "resume_point"]

logger = logging.getLogger(__name__)


def resume_point(run: RunConfig, meta: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """The state and completed round to continue from; ``(None, 0)`` for a fresh run.

    Raises:
        ConfigError: if the checkpoint is missing, belongs to another model, or already
            completed ``num-server-rounds``.
    """
    if not run.resume_from:
        return None, 0
    try:
        checkpoint = RunDirectory(run.resume_from).load_checkpoint()
    except FileNotFoundError as exc:
        raise ConfigError(f"resume-from={run.resume_from!r}: {exc}") from exc
    stored = checkpoint.get("meta", {})
    differing = {k: (stored.get(k), v) for k, v in meta.items() if stored.get(k) != v}
    if differing:
        raise ConfigError(f"resume-from={run.resume_from!r}: checkpoint was made with "
                          + ", ".join(f"{k}={old!r} (run asks {new!r})" for k, (old, new) in differing.items())
                          + "; resume with the original settings")
    done = int(checkpoint["round"])
    if done >= run.num_server_rounds:
        raise ConfigError(f"resume-from={run.resume_from!r}: round {done} of num-server-rounds="
                          f"{run.num_server_rounds} is already done; raise num-server-rounds to train further")
    logger.info("resuming from %s: round %d done, training rounds %d-%d",
                run.resume_from, done, done + 1, run.num_server_rounds)
    return checkpoint["state"], done


class RoundOffset(Strategy):
    """Delegates to ``inner`` with every round number shifted by ``offset``."""

    def __init__(self, inner: Strategy, offset: int) -> None:
        self.inner = inner
        self.offset = offset

    def shift(self, evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None
              ) -> Callable[[int, ArrayRecord], MetricRecord | None] | None:
        """The same ``Strategy.start`` ``evaluate_fn``, called with shifted round numbers."""
        if evaluate_fn is None:
            return None
        return lambda server_round, arrays: evaluate_fn(server_round + self.offset, arrays)

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.inner.configure_train(server_round + self.offset, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round + self.offset, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round + self.offset, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round + self.offset, replies)
